//! `stanzahook filter run`: one filter, one event, no server. Prints the decision, the guest's
//! log lines and the time each step took, so a filter can be tested while it is written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use super::{CallReport, FilterSettings, Level};

/// What to run.
#[derive(Debug, Clone)]
pub struct LocalRun {
    pub wasm: PathBuf,
    pub event: PathBuf,
    /// The webhook's status for the `after` hook; with `reply`, defaults to 200.
    pub status: Option<u16>,
    pub reply: Option<PathBuf>,
    pub config: BTreeMap<String, String>,
}

/// The printable report, and whether the filter failed.
#[derive(Debug)]
pub struct LocalReport {
    pub text: String,
    pub failed: bool,
}

pub fn run(args: &LocalRun) -> anyhow::Result<LocalReport> {
    let event = read_json(&args.event, "--event")?;
    if !event.is_object() {
        bail!("{}: the event must be a JSON object", args.event.display());
    }
    let reply = args.reply.as_ref().map(|p| read_json(p, "--reply")).transpose()?;
    let mut settings = FilterSettings::from_path(args.wasm.clone());
    settings.config = args.config.clone();
    // The compile cache `run` and `check` use by default: an unchanged filter is not compiled again.
    let mut loader = super::FilterLoader::new(super::CompileCache::default_dir());
    let (filter, loaded) = loader.load_alone(settings)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{loaded}; {}",
        if filter.reuses_instances() {
            "allows reuse: stanzahook keeps its instance between calls"
        } else {
            "a fresh instance per call"
        }
    );

    let event_text = event.to_string();
    let (before, report) = filter.before(&event_text);
    let mut failed = false;
    match before {
        Ok(verdict) => {
            section(&mut out, "before", verdict.name(), verdict.json().as_ref(), &report);
        }
        Err(e) => {
            failed = true;
            section(&mut out, "before", &format!("error: {e}"), None, &report);
        }
    }

    if args.status.is_some() || reply.is_some() {
        let status = args.status.unwrap_or(200);
        let reply_text = reply.as_ref().map(Value::to_string);
        let (after, report) = filter.after(&event_text, status, reply_text.as_deref());
        match after {
            Ok(verdict) => {
                let hook = format!("after (status {status})");
                section(&mut out, &hook, verdict.name(), verdict.json().as_ref(), &report);
            }
            Err(e) => {
                failed = true;
                section(&mut out, &format!("after (status {status})"), &format!("error: {e}"), None, &report);
            }
        }
    }
    Ok(LocalReport { text: out, failed })
}

fn section(out: &mut String, hook: &str, verdict: &str, json: Option<&Value>, report: &CallReport) {
    let _ = writeln!(
        out,
        "{hook}: {verdict}  (instantiate {:.2} ms, call {:.2} ms)",
        report.instantiate.as_secs_f64() * 1e3,
        report.call.as_secs_f64() * 1e3
    );
    if let Some(json) = json {
        let pretty = serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string());
        for line in pretty.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    for (level, message) in &report.logs {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let _ = writeln!(out, "  log {level}: {message}");
    }
}

/// The JSON in the file at `path`, or on standard input for `-`.
fn read_json(path: &PathBuf, flag: &str) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).with_context(|| format!("{flag} -: cannot read standard input"))?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("{flag} {}: cannot read", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{flag} {}: not valid JSON", path.display()))
}
