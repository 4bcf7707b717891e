//! Logs through `tracing`, as text for people or as JSON in bunyan's field
//! layout (`name`, `hostname`, `pid`, `level` 10..60, `msg`, `time`, `v`),
//! since Triton operators read logs with `bunyan`. `RUST_LOG` filters
//! (default `info`). Logs go to stderr; stdout stays for command output.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    /// bunyan's JSON layout.
    Json,
}

/// Install the global subscriber (once; later calls are ignored).
pub fn init(format: LogFormat) {
    init_with_level(format, "info");
}

/// As [`init`], with `level` (a `RUST_LOG`-style filter) when `RUST_LOG`
/// is not set.
pub fn init_with_level(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(Bunyan::new("tritonctl"))
            .try_init(),
    };
}

/// bunyan's record layout: one JSON object per line.
pub struct Bunyan {
    name: String,
    hostname: String,
    pid: u32,
}

impl Bunyan {
    pub fn new(name: &str) -> Bunyan {
        Bunyan {
            name: name.to_string(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            pid: std::process::id(),
        }
    }
}

/// bunyan's numeric levels.
pub fn bunyan_level(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::TRACE => 10,
        tracing::Level::DEBUG => 20,
        tracing::Level::INFO => 30,
        tracing::Level::WARN => 40,
        tracing::Level::ERROR => 50,
    }
}

struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

impl<S, N> FormatEvent<S, N> for Bunyan
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut rec = serde_json::Map::new();
        rec.insert("name".into(), self.name.clone().into());
        rec.insert("hostname".into(), self.hostname.clone().into());
        rec.insert("pid".into(), self.pid.into());
        let meta = event.metadata();
        rec.insert("level".into(), bunyan_level(meta.level()).into());
        rec.insert("component".into(), meta.target().into());
        // Fields of the enclosing spans (e.g. the reconcile's `key`), outermost first.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && let Ok(serde_json::Value::Object(m)) =
                        serde_json::from_str::<serde_json::Value>(f.as_str())
                {
                    rec.extend(m);
                }
            }
        }
        let mut fields = serde_json::Map::new();
        event.record(&mut Fields(&mut fields));
        let msg = fields
            .remove("message")
            .and_then(|m| m.as_str().map(str::to_string))
            .unwrap_or_default();
        rec.extend(fields);
        rec.insert("msg".into(), msg.into());
        let now = time::OffsetDateTime::now_utc();
        let time = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        rec.insert("time".into(), time.into());
        rec.insert("v".into(), 0.into());
        let line = serde_json::to_string(&rec).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_follow_bunyans_layout() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .fmt_fields(JsonFields::new())
            .event_format(Bunyan::new("tritonctl"))
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("reconcile", key = "ManateeVersion/sdc");
            let _g = span.enter();
            tracing::warn!(step = "freeze", attempt = 2u64, "step waiting");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let rec: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(rec["name"], "tritonctl");
        assert_eq!(rec["level"], 40);
        assert_eq!(rec["msg"], "step waiting");
        assert_eq!(rec["v"], 0);
        assert_eq!(rec["pid"], std::process::id());
        assert_eq!(rec["step"], "freeze");
        assert_eq!(rec["attempt"], 2);
        assert_eq!(rec["key"], "ManateeVersion/sdc");
        assert!(rec["time"].as_str().unwrap().ends_with('Z'), "{rec}");
        assert!(rec["hostname"].is_string());
    }
}
