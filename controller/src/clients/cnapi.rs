//! CNAPI: servers, and running commands on them.

use reqwest::Method;
use wire::apis::{ExecuteRequest, ExecuteResult, Server};

use super::listed::Listed;
use super::{ApiError, HttpApi};

#[derive(Clone)]
pub struct Cnapi(pub HttpApi);

impl Cnapi {
    /// Each server decoded on its own (see `listed.rs`).
    pub async fn servers(&self) -> Result<Listed<Server>, ApiError> {
        self.0.list("/servers", &[]).await
    }

    pub async fn server(&self, uuid: &str) -> Result<Server, ApiError> {
        self.0.get(&format!("/servers/{uuid}"), &[]).await
    }

    /// Run one command on a server, inside `zone` (through `zlogin`) when
    /// given, the way sdcadm runs `manatee-adm` in manatee zones.
    pub async fn execute(
        &self,
        server: &str,
        zone: Option<&str>,
        argv: &[&str],
    ) -> Result<ExecuteResult, ApiError> {
        let line = argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let script = match zone {
            Some(z) => format!("#!/bin/bash\nzlogin {z} {line}\n"),
            None => format!("#!/bin/bash\n{line}\n"),
        };
        let req = ExecuteRequest {
            script,
            json: true,
            ..Default::default()
        };
        self.0
            .send(
                Method::POST,
                &format!("/servers/{server}/execute"),
                &[],
                Some(&req),
            )
            .await
    }
}

impl Cnapi {
    /// Run a pipeline (`a | b`) in the background on a server's global
    /// zone, e.g. a `zfs send | nc` that outlives the execute call; its
    /// progress is watched with other commands.
    pub async fn execute_pipeline_bg(
        &self,
        server: &str,
        stages: &[&[&str]],
    ) -> Result<ExecuteResult, ApiError> {
        let line = stages
            .iter()
            .map(|argv| {
                argv.iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join(" | ");
        let req = ExecuteRequest {
            script: format!("#!/bin/bash\n{line} &\n"),
            json: true,
            ..Default::default()
        };
        self.0
            .send(
                reqwest::Method::POST,
                &format!("/servers/{server}/execute"),
                &[],
                Some(&req),
            )
            .await
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
