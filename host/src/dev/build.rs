//! Building a filter from its source (README: "The development loop"): the filter's `build`
//! command, or the convention for what its `source` directory holds, run in that directory.
//! Builds write beside the filter's file and the result is renamed into place, so the reload
//! that follows never reads half a component.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::filter::{FilterSettings, FilterSource};

/// The build output shown when a build fails: its last lines, where compilers put the error.
const SHOWN_LINES: usize = 40;

/// How a directory of each language is built, when the config names no command. The commands
/// see `STANZAHOOK_OUT` (where to write the component), `STANZAHOOK_WIT` (the WIT this host
/// serves) and `STANZAHOOK_SDK` (the `guest-sdk/` directory it was built with).
const CONVENTIONS: [(&str, &str); 3] = [
    ("Cargo.toml", "cargo build --release --target wasm32-wasip2"),
    (
        "app.py",
        "componentize-py -d \"$STANZAHOOK_WIT\" -w reusable-filter componentize -p \"$STANZAHOOK_SDK/python\" -p . \
         app -o \"$STANZAHOOK_OUT\"",
    ),
    ("filter.js", "node \"$STANZAHOOK_SDK/js/build.mjs\" --wit \"$STANZAHOOK_WIT\" . \"$STANZAHOOK_OUT\""),
];

/// One filter's build.
#[derive(Debug, Clone)]
pub struct Build {
    pub filter: String,
    pub dir: PathBuf,
    pub command: String,
    /// The filter's file: where the component must end up.
    pub path: PathBuf,
    /// Whether the command writes `STANZAHOOK_OUT` (renamed to `path` after) or `path` itself
    /// (cargo, which knows its own output).
    writes_out: bool,
}

impl Build {
    /// The build of a filter that names a source, or why there is none.
    pub fn of(settings: &FilterSettings, source: &FilterSource) -> anyhow::Result<Build> {
        let (command, writes_out) = match &source.build {
            Some(command) => (command.clone(), command.contains("STANZAHOOK_OUT")),
            None => {
                let Some((_, command)) = CONVENTIONS.iter().find(|(file, _)| source.dir.join(file).is_file()) else {
                    bail!(
                        "filter `{}`: {} holds no Cargo.toml, app.py or filter.js; set the filter's `build` command",
                        settings.name,
                        source.dir.display()
                    );
                };
                ((*command).to_owned(), !command.starts_with("cargo"))
            }
        };
        // The command runs in `dir`: a path relative to where stanzahook runs would name another file.
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(Build {
            filter: settings.name.clone(),
            dir: absolute(&source.dir),
            command,
            path: absolute(&settings.path),
            writes_out,
        })
    }

    /// Runs the build; on success the filter's file is the new component. The error carries
    /// the build's last lines of output.
    /// `root` holds `wit/` and `guest-sdk/`.
    pub fn run(&self, root: &Path) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = partial_path(&self.path);
        let _ = std::fs::remove_file(&out);
        let output = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .current_dir(&self.dir)
            .env("STANZAHOOK_OUT", &out)
            .env("STANZAHOOK_WIT", root.join("wit"))
            .env("STANZAHOOK_SDK", root.join("guest-sdk"))
            .output()
            .with_context(|| format!("filter `{}`: cannot run `sh -c {}`", self.filter, self.command))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let lines: Vec<&str> = text.lines().collect();
            let shown = lines[lines.len().saturating_sub(SHOWN_LINES)..].join("\n");
            bail!("filter `{}`: `{}` failed ({}):\n{shown}", self.filter, self.command, output.status);
        }
        if self.writes_out || out.exists() {
            if !out.is_file() {
                bail!("filter `{}`: `{}` succeeded but wrote nothing to $STANZAHOOK_OUT", self.filter, self.command);
            }
            std::fs::rename(&out, &self.path).with_context(|| {
                format!("filter `{}`: cannot move the build to {}", self.filter, self.path.display())
            })?;
        } else if !self.path.is_file() {
            bail!("filter `{}`: `{}` succeeded but there is no {}", self.filter, self.command, self.path.display());
        }
        Ok(started.elapsed())
    }

    /// Whether a changed file can change the build: not its output, nor what builds leave
    /// behind (`target/`, `node_modules/`, `__pycache__/`, hidden files, `.wasm`).
    pub fn concerns(&self, changed: &Path) -> bool {
        // The build's own output may lie inside its source (`source = "."`).
        if changed == self.path || changed == partial_path(&self.path) {
            return false;
        }
        let Ok(inside) = changed.strip_prefix(&self.dir) else { return false };
        let left_behind = inside.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.starts_with('.') || matches!(c.as_ref(), "target" | "node_modules" | "__pycache__")
        });
        !left_behind && changed.extension().is_none_or(|e| e != "wasm")
    }
}

/// Where a build writes before its result is renamed into place.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".building");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &Path, command: Option<&str>) -> anyhow::Result<Build> {
        let settings = FilterSettings::from_path(dir.join("out/f.wasm"));
        Build::of(&settings, &FilterSource { dir: dir.to_owned(), build: command.map(str::to_owned) })
    }

    #[test]
    fn the_convention_follows_what_the_directory_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = build(dir.path(), None).expect_err("nothing to go by");
        assert!(e.to_string().contains("no Cargo.toml, app.py or filter.js"), "{e}");
        std::fs::write(dir.path().join("app.py"), "").expect("write");
        assert!(build(dir.path(), None).expect("python").command.starts_with("componentize-py"));
        std::fs::write(dir.path().join("Cargo.toml"), "").expect("write");
        assert!(build(dir.path(), None).expect("rust").command.starts_with("cargo build"));
        assert_eq!(build(dir.path(), Some("make")).expect("own").command, "make");
    }

    #[test]
    fn a_build_writes_aside_and_its_failure_shows_the_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("out")).expect("mkdir");
        let ok = build(dir.path(), Some("printf component > \"$STANZAHOOK_OUT\"")).expect("build");
        ok.run(dir.path()).expect("builds");
        assert_eq!(std::fs::read(dir.path().join("out/f.wasm")).expect("moved into place"), b"component");
        let failing = build(dir.path(), Some("echo 'app.py:3: SyntaxError' >&2; exit 1")).expect("build");
        let e = format!("{:#}", failing.run(dir.path()).expect_err("fails"));
        assert!(e.contains("SyntaxError") && e.contains("exit status: 1"), "{e}");
        let silent = build(dir.path(), Some("true $STANZAHOOK_OUT")).expect("build");
        assert!(format!("{:#}", silent.run(dir.path()).expect_err("no output")).contains("wrote nothing"));
    }

    #[test]
    fn relative_paths_are_taken_from_where_stanzahook_runs_not_from_the_source() {
        let settings = FilterSettings::from_path(PathBuf::from("out/f.wasm"));
        let b = Build::of(&settings, &FilterSource { dir: PathBuf::from("src"), build: Some("make".into()) })
            .expect("build");
        let here = std::env::current_dir().expect("cwd");
        assert_eq!((b.path, b.dir), (here.join("out/f.wasm"), here.join("src")));
    }

    #[test]
    fn what_builds_leave_behind_does_not_start_a_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = build(dir.path(), Some("make")).expect("build");
        assert!(b.concerns(&dir.path().join("app.py")));
        assert!(b.concerns(&dir.path().join("lib/util.py")));
        for left in ["target/x.rs", "node_modules/a/b.js", "__pycache__/app.pyc", ".app.py.swp", "f.wasm"] {
            assert!(!b.concerns(&dir.path().join(left)), "{left}");
        }
        assert!(!b.concerns(Path::new("/elsewhere/app.py")));
        assert!(!b.concerns(&dir.path().join("out/f.wasm.building")), "its own output, written aside");
    }
}
