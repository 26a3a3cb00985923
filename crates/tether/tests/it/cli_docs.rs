//! The reference documentation is complete: every flag of every command has a line of help and
//! every command an example, the manual pages and shell completions generate, `--version` names
//! the commit, and every configuration key the code reads is in `docs/`.

use std::process::Command;

use tether_testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

fn run(args: &[&str]) -> String {
    // No inherited TETHER_* variable may show up in a help text (`[env: TETHER_X=value]`).
    let out = Command::new(BIN).args(args).env_clear().output().expect("tether runs");
    assert!(out.status.success(), "tether {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The subcommands a `--help` text lists (its `Commands:` section), without `help`.
fn subcommands(help: &str) -> Vec<String> {
    let mut in_cmds = false;
    let mut out = Vec::new();
    for l in help.lines() {
        if l.starts_with("Commands:") {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if !l.starts_with("  ") {
                break;
            }
            // Long help puts the description on the next lines, more indented.
            if l.starts_with("  ") && !l.starts_with("    ") {
                let name = l.split_whitespace().next().unwrap_or("").to_string();
                if !name.is_empty() && name != "help" {
                    out.push(name);
                }
            }
        }
    }
    out
}

#[test]
fn every_command_and_flag_is_documented() {
    let mut todo = vec![vec![]];
    let mut seen = 0;
    let mut missing = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(&args);
        let subs = subcommands(&help);
        if !path.is_empty() && subs.is_empty() && !help.contains("Example: ") {
            missing.push(format!("`tether {}` has no example", path.join(" ")));
        }
        // Long help: an option line, then its description indented below it.
        let lines: Vec<&str> = help.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let indent = l.len() - t.len();
            if (2..=6).contains(&indent) && t.starts_with('-') && !t.starts_with("-h, --help") && !t.starts_with("-V") {
                // Short help keeps the description on the option's line, after two spaces.
                let inline = t.split_once("  ").is_some_and(|(_, d)| !d.trim().is_empty());
                let described = inline || lines.get(i + 1).is_some_and(|n| n.len() - n.trim_start().len() > indent + 2);
                if !described {
                    missing.push(format!("`tether {}`: {t} has no description", path.join(" ")));
                }
                seen += 1;
            }
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s);
            todo.push(p);
        }
    }
    assert!(seen > 100, "only {seen} options found: the --help parsing is broken");
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
}

#[test]
fn manual_pages_completions_and_version() {
    let v = run(&["--version"]);
    assert!(v.starts_with("tether ") && v.contains("(commit "), "--version: {v}");
    let d = TempDir::new("man");
    let said = run(&["man", "--out", d.path().to_str().unwrap()]);
    assert!(said.contains("manual pages"), "{said}");
    for page in ["tether.1", "tether-serve.1", "tether-gateway.1", "tether-app-create.1", "tether-user-add.1"] {
        let text = std::fs::read_to_string(d.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is not a manual page");
    }
    let serve = std::fs::read_to_string(d.path().join("tether-serve.1")).unwrap();
    assert!(serve.contains("listen"), "tether-serve.1 lists its flags");
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef tether"), ("fish", "complete -c tether")] {
        let script = run(&["completions", shell]);
        assert!(script.contains(marker), "{shell} completion lacks {marker:?}");
        assert!(script.contains("serve") && script.contains("gateway"), "{shell} completion lists the commands");
    }
}

/// Field names of the `Deserialize` structs in a config source file (their TOML keys), with
/// `#[serde(rename = "…")]` applied.
fn config_keys(src: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut in_struct = false;
    let mut deser = false;
    let mut rename: Option<String> = None;
    for l in src.lines() {
        let t = l.trim();
        if t.starts_with("#[derive(") {
            deser = t.contains("Deserialize");
        } else if t.starts_with("pub struct ") || t.starts_with("struct ") {
            in_struct = deser && t.ends_with('{');
            deser = false;
        } else if in_struct && t == "}" {
            in_struct = false;
        } else if in_struct && t.starts_with("#[serde(") && t.contains("rename = \"") {
            rename = t.split("rename = \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
        } else if in_struct
            && let Some(rest) = t.strip_prefix("pub ").or(Some(t))
            && let Some((name, _)) = rest.split_once(':')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            keys.push(rename.take().unwrap_or_else(|| name.to_string()));
        }
    }
    keys
}

#[test]
fn every_config_key_is_in_the_docs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut docs = String::new();
    for e in std::fs::read_dir(format!("{root}/docs")).expect("docs/") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    let mut missing = Vec::new();
    let mut n = 0;
    for file in [
        "crates/tether-server/src/config.rs",
        "crates/tether-gateway/src/config.rs",
        "crates/tether-gateway/src/routes.rs",
    ] {
        let src = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        for k in config_keys(&src) {
            n += 1;
            // A key (`name`, `name = …`) or a section (`[name]`, `[[name]]`).
            let documented = [format!("`{k}`"), format!("{k} ="), format!("[{k}]"), format!("[[{k}]]")]
                .iter()
                .any(|form| docs.contains(form.as_str()));
            if !documented {
                missing.push(format!("{file}: `{k}`"));
            }
        }
    }
    assert!(n > 40, "only {n} config keys found: the parsing is broken");
    assert!(missing.is_empty(), "config keys not in docs/:\n{}", missing.join("\n"));
}

#[test]
fn nothing_points_outside_the_repository() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut files = vec![format!("{root}/README.md"), format!("{root}/CHANGELOG.md")];
    for e in std::fs::read_dir(format!("{root}/docs")).expect("docs/") {
        files.push(e.unwrap().path().display().to_string());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for bad in ["shared/spec", "../shared", "shared/research", "ARCHITECTURE.md"] {
            assert!(!text.contains(bad), "{f} points outside the repository ({bad})");
        }
    }
}

/// `docs/cli.md`: every command's `--help`, generated from the binary (refresh it with
/// `TETHER_UPDATE_DOCS=1 cargo test -p tether --test it cli_reference`).
#[test]
fn cli_reference_in_docs_is_current() {
    let mut pages = Vec::new();
    let mut todo = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(&args);
        for s in subcommands(&help).into_iter().rev() {
            let mut p = path.clone();
            p.push(s);
            todo.push(p);
        }
        pages.push((path, help));
    }
    let mut md = String::from(
        "# Command-line reference\n\nGenerated from `tether --help` and every subcommand's `--help` \
         (`TETHER_UPDATE_DOCS=1 cargo test -p tether --test it cli_reference` refreshes it; a test fails \
         when it is stale). The same text is in the manual pages (`tether man --out DIR`).\n",
    );
    for (path, help) in &pages {
        let name = if path.is_empty() { "tether".to_string() } else { format!("tether {}", path.join(" ")) };
        md.push_str(&format!("\n## {name}\n\n```text\n{}\n```\n", help.trim_end()));
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md");
    if std::env::var_os("TETHER_UPDATE_DOCS").is_some() {
        std::fs::write(file, &md).unwrap();
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        committed == md,
        "docs/cli.md is stale: refresh it with TETHER_UPDATE_DOCS=1 cargo test -p tether --test it cli_reference"
    );
    assert!(pages.len() > 25, "only {} commands", pages.len());
}
