//! CNAPI: servers, setup, and commands executed on them.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wire::apis::{
    ExecuteRequest, ExecuteResult, FieldError, JobUuidResponse, JsonMap, Server, ServerStatus,
    VmState,
};

use super::error::ApiError;
use super::events::{DcEvent, ExecEvent, SvcAction, SvcadmCommand};
use super::ids::is_uuid;
use super::jobs::JobKind;
use super::params::{bool_param, obj_param, str_param, uint_param};
use super::state::{SimServer, State, smf_display};
use super::{Datacenter, now_iso};

const LIST_PARAMS: &[&str] = &[
    "uuids",
    "setup",
    "headnode",
    "reserved",
    "reservoir",
    "hostname",
    "extras",
    "fields",
    "limit",
    "offset",
];
const EXTRAS: &[&str] = &[
    "agents", "vms", "memory", "disk", "sysinfo", "capacity", "all",
];

fn server_not_found(uuid: &str) -> ApiError {
    ApiError::not_found(format!("Server {uuid} not found"))
}

/// Which optional parts of a server record to include.
#[derive(Clone, Copy, Debug, Default)]
struct Extras {
    agents: bool,
    vms: bool,
    memory: bool,
    disk: bool,
    sysinfo: bool,
}

impl Extras {
    fn all() -> Self {
        Extras {
            agents: true,
            vms: true,
            memory: true,
            disk: true,
            sysinfo: true,
        }
    }
}

/// A server with everything ServerGet returns, derived parts filled in.
pub(crate) fn full_server(st: &State, s: &SimServer) -> Server {
    render_server(st, s, Extras::all())
}

fn render_server(st: &State, s: &SimServer, x: Extras) -> Server {
    let mut srv = s.server.clone();
    let vms: BTreeMap<String, Value> = st
        .vms
        .values()
        .filter(|v| {
            v.vm.server_uuid.as_deref() == Some(srv.uuid.as_str())
                && v.vm.state != VmState::Destroyed
        })
        .map(|v| {
            (
                v.vm.uuid.clone(),
                json!({
                    "uuid": v.vm.uuid,
                    "owner_uuid": v.vm.owner_uuid,
                    "brand": v.vm.brand,
                    "state": v.vm.state.as_str(),
                    "zone_state": v.vm.zone_state,
                    "max_physical_memory": v.vm.max_physical_memory,
                    "quota": v.vm.quota,
                    "cpu_cap": v.vm.cpu_cap,
                    "last_modified": v.vm.last_modified,
                }),
            )
        })
        .collect();
    let used_mib: u64 = vms
        .values()
        .filter_map(|v| v["max_physical_memory"].as_u64())
        .sum();
    let total = srv.ram * 1024 * 1024;
    srv.unreserved_ram = Some(srv.ram.saturating_sub(used_mib));
    srv.agents = x.agents.then(|| srv.agents.clone().unwrap_or_default());
    srv.vms = x.vms.then_some(vms);
    if x.memory {
        srv.memory_total_bytes = Some(total);
        srv.memory_available_bytes = Some(total.saturating_sub(used_mib * 1024 * 1024));
        srv.memory_arc_bytes = Some(total / 16);
        srv.memory_provisionable_bytes =
            Some(total.saturating_sub(used_mib * 1024 * 1024) * 85 / 100);
    } else {
        srv.memory_total_bytes = None;
        srv.memory_available_bytes = None;
        srv.memory_arc_bytes = None;
        srv.memory_provisionable_bytes = None;
    }
    if x.disk {
        srv.disk_pool_size_bytes = Some(4 * 1024 * 1024 * 1024 * 1024);
        srv.disk_zone_quota_bytes = Some(
            st.vms
                .values()
                .filter(|v| v.vm.server_uuid.as_deref() == Some(srv.uuid.as_str()))
                .filter_map(|v| v.vm.quota)
                .sum::<u64>()
                * 1024
                * 1024
                * 1024,
        );
    } else {
        srv.disk_pool_size_bytes = None;
        srv.disk_zone_quota_bytes = None;
    }
    if x.sysinfo {
        // A dead server's last heartbeat stays in the past.
        if !s.dead {
            srv.last_heartbeat = Some(now_iso());
        }
    } else {
        srv.sysinfo = None;
        srv.last_heartbeat = None;
    }
    srv.status = if s.dead {
        ServerStatus::Unknown
    } else {
        srv.status
    };
    srv
}

fn project(v: Value, fields: Option<&[String]>) -> Value {
    match (fields, v) {
        (Some(f), Value::Object(o)) => Value::Object(
            f.iter()
                .filter_map(|k| o.get(k).map(|x| (k.clone(), x.clone())))
                .collect(),
        ),
        (_, v) => v,
    }
}

/// A command to run in a zone (or the global zone), as parsed from an
/// execute script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneCommand {
    pub server_uuid: String,
    pub zone: Option<String>,
    pub argv: Vec<String>,
}

/// `svc:/manatee/sitter:default`, `manatee/sitter` and `manatee-sitter`
/// name different things in SMF; we only strip the scheme and instance so
/// that `svc:/x:default` and `x` agree.
pub fn normalize_fmri(f: &str) -> String {
    let f = f.strip_prefix("svc:/").unwrap_or(f);
    f.strip_suffix(":default").unwrap_or(f).to_string()
}

/// Split one shell line into words, honouring quotes and backslashes.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Split a script into commands: lines, then `;`/`&&`/`||` separators
/// (outside quotes), dropping comments, the shebang and `set` lines.
fn script_commands(script: &str) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(q), c) if c == q => {
                    quote = None;
                    cur.push(c);
                }
                (Some(_), c) => cur.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    cur.push(c);
                }
                (None, ';') => parts.push(std::mem::take(&mut cur)),
                (None, '&' | '|') if chars.peek() == Some(&c) => {
                    chars.next();
                    parts.push(std::mem::take(&mut cur));
                }
                (None, c) => cur.push(c),
            }
        }
        parts.push(cur);
        for p in parts {
            let words = shell_words(&p);
            if words.is_empty() || words[0] == "set" {
                continue;
            }
            cmds.push(words);
        }
    }
    cmds
}

fn base(cmd: &str) -> &str {
    cmd.rsplit('/').next().unwrap_or(cmd)
}

/// Peel `zlogin [-Q] ZONE CMD...` and `svcadm|svcs -z ZONE ...` into the
/// zone and the command run inside it.
fn locate(argv: Vec<String>) -> (Option<String>, Vec<String>) {
    if argv.is_empty() {
        return (None, argv);
    }
    let cmd = base(&argv[0]).to_string();
    if cmd == "zlogin" {
        let mut i = 1;
        while i < argv.len() && argv[i].starts_with('-') {
            i += 1;
        }
        let zone = argv.get(i).cloned();
        let rest: Vec<String> = argv[(i + 1).min(argv.len())..].to_vec();
        // `zlogin Z "svcadm disable x"`: the command is one quoted word.
        let inner = if rest.len() == 1 {
            shell_words(&rest[0])
        } else {
            rest
        };
        return (zone, inner);
    }
    if (cmd == "svcadm" || cmd == "svcs") && argv.get(1).map(String::as_str) == Some("-z") {
        let zone = argv.get(2).cloned();
        let mut inner = vec![argv[0].clone()];
        inner.extend(argv.iter().skip(3).cloned());
        return (zone, inner);
    }
    (None, argv)
}

fn parse_svcadm(argv: &[String]) -> Option<SvcadmCommand> {
    if argv.first().map(|c| base(c)) != Some("svcadm") {
        return None;
    }
    let mut it = argv.iter().skip(1).filter(|a| *a != "-v");
    let action = match it.next()?.as_str() {
        "enable" => SvcAction::Enable,
        "disable" => SvcAction::Disable,
        "restart" => SvcAction::Restart,
        "refresh" => SvcAction::Refresh,
        "clear" => SvcAction::Clear,
        _ => return None,
    };
    let mut temporary = false;
    let mut fmri = None;
    for a in it {
        match a.as_str() {
            "-t" => temporary = true,
            "-s" | "-r" => {}
            f => {
                fmri = Some(f.to_string());
                break;
            }
        }
    }
    Some(SvcadmCommand {
        action,
        fmri: fmri?,
        temporary,
    })
}

fn ok(stdout: impl Into<String>) -> ExecuteResult {
    ExecuteResult {
        stdout: stdout.into(),
        stderr: String::new(),
        exit_code: 0,
    }
}

fn err(code: i32, stderr: impl Into<String>) -> ExecuteResult {
    ExecuteResult {
        stdout: String::new(),
        stderr: stderr.into(),
        exit_code: code,
    }
}

impl Datacenter {
    /// `GET /servers` with CNAPI's strict query validation.
    pub fn cnapi_list_servers(&self, p: &JsonMap) -> Result<Vec<Value>, ApiError> {
        for k in p.keys() {
            if !LIST_PARAMS.contains(&k.as_str()) {
                return Err(ApiError::invalid_argument(format!(
                    "{k} is not an explicitly defined parameter"
                )));
            }
        }
        let mut errs = Vec::new();
        let mut bools = BTreeMap::new();
        for k in ["setup", "headnode", "reserved", "reservoir"] {
            match bool_param(p, k) {
                Ok(Some(b)) => {
                    bools.insert(k, b);
                }
                Ok(None) => {}
                Err(_) => errs.push(FieldError::new(
                    k,
                    "Invalid",
                    Some("Must be true or false".into()),
                )),
            }
        }
        let mut x = Extras::default();
        if let Some(raw) = str_param(p, "extras") {
            for e in raw.split(',') {
                match e {
                    "agents" => x.agents = true,
                    "vms" => x.vms = true,
                    "memory" => x.memory = true,
                    "disk" => x.disk = true,
                    "sysinfo" => x.sysinfo = true,
                    "capacity" => {}
                    "all" => x = Extras::all(),
                    _ => {
                        errs.push(FieldError::new(
                            "extras",
                            "Invalid",
                            Some(format!("Must be one of: {}", EXTRAS.join(", "))),
                        ));
                        break;
                    }
                }
            }
        }
        let limit = match uint_param(p, "limit") {
            Ok(Some(n)) if (1..=1000).contains(&n) => Some(n as usize),
            Ok(None) => None,
            _ => {
                errs.push(FieldError::new(
                    "limit",
                    "Invalid",
                    Some("Must be a number between 1 and 1000".into()),
                ));
                None
            }
        };
        let offset = match uint_param(p, "offset") {
            Ok(n) => n.unwrap_or(0) as usize,
            Err(_) => {
                errs.push(FieldError::new(
                    "offset",
                    "Invalid",
                    Some("Must be a number >= 0".into()),
                ));
                0
            }
        };
        let uuids: Option<Vec<String>> =
            str_param(p, "uuids").map(|u| u.split(',').map(str::to_string).collect());
        if let Some(us) = &uuids
            && !us.iter().all(|u| is_uuid(u))
        {
            errs.push(FieldError::new(
                "uuids",
                "Invalid",
                Some("Invalid UUID".into()),
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::cnapi_invalid(errs));
        }
        let fields: Option<Vec<String>> =
            str_param(p, "fields").map(|f| f.split(',').map(str::to_string).collect());
        let hostname = str_param(p, "hostname");

        let st = self.lock();
        let out = st
            .servers
            .values()
            .filter(|s| {
                let srv = &s.server;
                uuids.as_ref().is_none_or(|u| u.contains(&srv.uuid))
                    && hostname.as_deref().is_none_or(|h| srv.hostname == h)
                    && bools.iter().all(|(k, want)| {
                        let have = match *k {
                            "setup" => srv.setup,
                            "headnode" => srv.headnode,
                            "reserved" => srv.reserved,
                            _ => srv.reservoir,
                        };
                        have == *want
                    })
            })
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .map(|s| {
                let v = serde_json::to_value(render_server(&st, s, x)).unwrap_or(Value::Null);
                project(v, fields.as_deref())
            })
            .collect();
        Ok(out)
    }

    /// `GET /servers/:uuid`: sysinfo, vms, agents, memory, disk included.
    pub fn cnapi_get_server(&self, uuid: &str) -> Result<Server, ApiError> {
        let st = self.lock();
        let s = st.servers.get(uuid).ok_or_else(|| server_not_found(uuid))?;
        Ok(full_server(&st, s))
    }

    /// `PUT /servers/:uuid/setup`: `Some(job)` (202) or `None` when the
    /// server is already set up (204).
    pub fn cnapi_setup_server(
        &self,
        uuid: &str,
        p: &JsonMap,
    ) -> Result<Option<JobUuidResponse>, ApiError> {
        let mut st = self.lock();
        let s = st.servers.get(uuid).ok_or_else(|| server_not_found(uuid))?;
        if s.server.setup {
            return Ok(None);
        }
        let mut extra = JsonMap::new();
        for k in ["hostname", "postsetup_script", "disk_layout", "disk_spares"] {
            if let Some(v) = p.get(k) {
                extra.insert(k.into(), v.clone());
            }
        }
        let job = self.create_job(
            &mut st,
            JobKind::ServerSetup {
                hostname: str_param(p, "hostname"),
            },
            None,
            Some(uuid),
            extra,
        );
        Ok(Some(JobUuidResponse {
            job_uuid: job,
            extra: JsonMap::new(),
        }))
    }

    /// `POST /servers/:uuid` (ServerUpdate): operator-settable fields.
    pub fn cnapi_update_server(&self, uuid: &str, p: &JsonMap) -> Result<(), ApiError> {
        let mut st = self.lock();
        let s = st
            .servers
            .get_mut(uuid)
            .ok_or_else(|| server_not_found(uuid))?;
        let srv = &mut s.server;
        for k in ["reserved", "reservoir", "setup", "setting_up"] {
            match bool_param(p, k) {
                Ok(Some(b)) => match k {
                    "reserved" => srv.reserved = b,
                    "reservoir" => srv.reservoir = b,
                    "setup" => srv.setup = b,
                    _ => srv.setting_up = b,
                },
                Ok(None) => {}
                Err(_) => {
                    return Err(ApiError::cnapi_invalid(vec![FieldError::new(
                        k,
                        "Invalid",
                        Some("Must be true or false".into()),
                    )]));
                }
            }
        }
        if let Some(t) = obj_param(p, "traits") {
            srv.traits = t;
        }
        if let Some(c) = str_param(p, "comments") {
            srv.comments = c;
        }
        if let Some(r) = str_param(p, "rack_identifier") {
            srv.rack_identifier = r;
        }
        if let Some(b) = str_param(p, "boot_platform") {
            srv.boot_platform = Some(b);
        }
        if let Some(Value::Number(n)) = p.get("reservation_ratio")
            && let Some(f) = n.as_f64()
        {
            srv.reservation_ratio = f;
        }
        Ok(())
    }

    /// `POST /servers/:uuid/execute`: run the script's commands. Commands in
    /// zones are recorded and published as [`DcEvent::Exec`]; `svcadm`
    /// changes the zone's SMF state and `svcs` reports it. Registered exec
    /// handlers may answer any command first.
    pub fn cnapi_execute(
        &self,
        uuid: &str,
        req: &ExecuteRequest,
    ) -> Result<ExecuteResult, ApiError> {
        {
            let st = self.lock();
            let s = st.servers.get(uuid).ok_or_else(|| server_not_found(uuid))?;
            if s.dead {
                return Err(ApiError::internal(format!(
                    "timed out waiting for response from server {uuid}"
                )));
            }
        }
        if !req.script.starts_with("#!") {
            return Err(ApiError::cnapi_invalid(vec![FieldError::new(
                "script",
                "Invalid",
                Some("script must begin with #!".into()),
            )]));
        }
        let mut result = ok("");
        for argv in script_commands(&req.script) {
            let (zone, inner) = locate(argv);
            let cmd = ZoneCommand {
                server_uuid: uuid.to_string(),
                zone,
                argv: inner,
            };
            let r = self.run_command(&cmd);
            result.stdout.push_str(&r.stdout);
            result.stderr.push_str(&r.stderr);
            result.exit_code = r.exit_code;
            if r.exit_code != 0 {
                break;
            }
        }
        Ok(result)
    }

    fn run_command(&self, cmd: &ZoneCommand) -> ExecuteResult {
        let zone_ok = match &cmd.zone {
            None => true,
            Some(z) => self.lock().vms.get(z).is_some_and(|v| {
                v.vm.server_uuid.as_deref() == Some(cmd.server_uuid.as_str())
                    && v.vm.state == VmState::Running
            }),
        };
        let svcadm = parse_svcadm(&cmd.argv);
        let result = if !zone_ok {
            let z = cmd.zone.clone().unwrap_or_default();
            err(1, format!("zlogin: zone '{z}' unknown or not running\n"))
        } else {
            // Handlers run without the state lock: they may call back in.
            let handled = self.exec_handlers().iter().find_map(|h| h(cmd));
            handled.unwrap_or_else(|| self.builtin(cmd, svcadm.as_ref()))
        };
        let mut st = self.lock();
        let ev = ExecEvent {
            server_uuid: cmd.server_uuid.clone(),
            zone: cmd.zone.clone(),
            argv: cmd.argv.clone(),
            svcadm: svcadm.filter(|_| result.exit_code == 0),
            exit_code: result.exit_code,
            time: now_iso(),
        };
        st.executions.push(ev.clone());
        self.emit(&mut st, DcEvent::Exec(ev));
        result
    }

    fn builtin(&self, cmd: &ZoneCommand, svcadm: Option<&SvcadmCommand>) -> ExecuteResult {
        let Some(first) = cmd.argv.first() else {
            return ok("");
        };
        match base(first) {
            "svcadm" => {
                let Some(s) = svcadm else {
                    return err(2, "svcadm: invalid usage\n");
                };
                if let Some(z) = &cmd.zone {
                    let mut st = self.lock();
                    if let Some(v) = st.vms.get_mut(z) {
                        let f = normalize_fmri(&s.fmri);
                        match s.action {
                            SvcAction::Disable if s.temporary => {
                                v.smf.insert(f, "disabled-temporary".into());
                            }
                            SvcAction::Disable => {
                                v.smf.insert(f, "disabled".into());
                            }
                            SvcAction::Enable | SvcAction::Clear => {
                                v.smf.insert(f, "online".into());
                            }
                            SvcAction::Restart | SvcAction::Refresh => {}
                        }
                    }
                }
                ok("")
            }
            "svcs" => {
                let fmris: Vec<&String> = cmd
                    .argv
                    .iter()
                    .skip(1)
                    .scan(false, |skip_next, a| {
                        let skip = *skip_next;
                        *skip_next = a == "-o";
                        Some((skip, a))
                    })
                    .filter(|(skip, a)| !*skip && !a.starts_with('-'))
                    .map(|(_, a)| a)
                    .collect();
                let state_only = cmd.argv.iter().any(|a| a == "-o");
                let st = self.lock();
                let v = cmd.zone.as_ref().and_then(|z| st.vms.get(z));
                let mut out = String::new();
                for f in fmris {
                    let n = normalize_fmri(f);
                    let state = v
                        .and_then(|v| v.smf.get(&n))
                        .map(|s| smf_display(s))
                        .unwrap_or("online");
                    if state_only {
                        out.push_str(&format!("{state}\n"));
                    } else {
                        out.push_str(&format!("{state:<14} 12:00:00 svc:/{n}:default\n"));
                    }
                }
                ok(out)
            }
            "echo" => ok(format!("{}\n", cmd.argv[1..].join(" "))),
            "true" => ok(""),
            "false" => err(1, ""),
            "hostname" => {
                let st = self.lock();
                match &cmd.zone {
                    Some(z) => ok(format!("{z}\n")),
                    None => ok(format!(
                        "{}\n",
                        st.servers
                            .get(&cmd.server_uuid)
                            .map(|s| s.server.hostname.clone())
                            .unwrap_or_default()
                    )),
                }
            }
            // Anything else is recorded and succeeds silently.
            _ => ok(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zlogin_and_svcadm_forms() {
        let s = "#!/bin/bash\nset -o errexit\n# disable it\n/usr/sbin/zlogin 1234 \"svcadm disable -s manatee-sitter\"\nsvcadm -z abcd enable -t svc:/manatee/sitter:default; echo done && true\n";
        let cmds = script_commands(s);
        assert_eq!(cmds.len(), 4);
        let (zone, inner) = locate(cmds[0].clone());
        assert_eq!(zone.as_deref(), Some("1234"));
        assert_eq!(inner, vec!["svcadm", "disable", "-s", "manatee-sitter"]);
        let sv = parse_svcadm(&inner).unwrap();
        assert_eq!(sv.action, SvcAction::Disable);
        assert_eq!(sv.fmri, "manatee-sitter");
        assert!(!sv.temporary);
        let (zone, inner) = locate(cmds[1].clone());
        assert_eq!(zone.as_deref(), Some("abcd"));
        let sv = parse_svcadm(&inner).unwrap();
        assert_eq!(sv.action, SvcAction::Enable);
        assert!(sv.temporary);
        assert_eq!(normalize_fmri(&sv.fmri), "manatee/sitter");
        assert_eq!(cmds[2], vec!["echo", "done"]);
    }

    #[test]
    fn shell_words_quotes() {
        assert_eq!(
            shell_words(r#"a 'b c' "d \"e\"" f\ g"#),
            vec!["a", "b c", "d \"e\"", "f g"]
        );
    }
}
