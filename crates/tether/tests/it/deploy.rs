//! The deployment files, tested rather than only written (issue "Ship it"):
//!
//! - `compose_topology_as_processes`: deploy/compose/compose.yaml run as plain processes, from
//!   the compose file's own commands, environment, mounts and secrets: `setup.sh` makes the
//!   secrets and certificates, `tether init`, two `tether serve` nodes on one PostgreSQL
//!   database, nginx (nginx.conf) terminating TLS and forwarding the client certificate, and
//!   `tether gateway` (gateway.toml) in front of an API. Only addresses, ports and paths change:
//!   container paths become the files their mounts name, and the lines holding an address are
//!   replaced one by one.
//! - `systemd_units_verify`: deploy/systemd through `systemd-analyze verify` and `security`, and
//!   tether.sysusers through `systemd-sysusers --dry-run`.
//! - `dockerfile_and_compose_are_consistent`: the Dockerfile and compose.yaml against each other,
//!   against the config files, and against the built binary (every command line they hold uses
//!   subcommands and flags it accepts); the image's HEALTHCHECK run against the image's config.
//!
//! nginx, systemd-analyze and openssl are installed by scripts/deps; a missing one fails the test
//! (naming the package), it is never skipped. The topology needs PostgreSQL: like the other
//! several-node tests it runs in the suite's PostgreSQL pass and is skipped on SQLite.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
/// Where the image installs the binary (Dockerfile); compose's healthchecks and the systemd
/// units name it.
const IMAGE_BIN: &str = "/usr/local/bin/tether";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
}

fn mkdir_private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p).expect("mkdir");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// A program on PATH, or at one of `also` (sbin directories are often not on a user's PATH).
fn find_tool(name: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .chain(also.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// A program the test cannot run without: a missing one fails the test with what to install.
fn need_tool(name: &str, also: &[&str], package: &str) -> PathBuf {
    find_tool(name, also).unwrap_or_else(|| {
        panic!(
            "{name} is needed by the deployment tests and is not installed (not on PATH{}): \
             run scripts/deps, or apt-get install {package}",
            if also.is_empty() { String::new() } else { format!(" nor at {}", also.join(", ")) }
        )
    })
}

/// A free port for a listener whose address must be known before it starts (nginx's is the
/// issuer's). Taken below the kernel's ephemeral range, so that no listener bound to port 0
/// elsewhere in the suite can take it before its owner binds it.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768);
    let (from, span) = (low.saturating_sub(12_000).max(1024), low.saturating_sub(1024).clamp(1, 12_000));
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = from + (h.finish() % u64::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {low}");
}

async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process with its stdout and stderr gathered; killed on drop (nginx gets SIGTERM
/// first, so that its master stops its workers). A failing test prints every process's log.
struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    graceful: bool,
}

/// Only what the deployment gives a process: its own variables, and PATH (plus a coverage
/// run's profile path).
fn command(program: &Path, args: &[String], env: &[(String, String)], cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd).env_clear();
    for k in ["PATH", "LLVM_PROFILE_FILE"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, graceful: bool) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        fn gather(r: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let mut g = log.lock().unwrap();
                    g.push_str(&line);
                    g.push('\n');
                }
            });
        }
        gather(child.stdout.take().expect("stdout"), log.clone());
        gather(child.stderr.take().expect("stderr"), log.clone());
        Proc { name: name.to_string(), child, log, graceful }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited ({st}):\n{}", self.name, self.log());
        }
    }

    /// The first log line containing `needle`.
    async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            self.assert_running();
            assert!(Instant::now() < deadline, "{}: no {needle:?} in its log after 30 s:\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address after `prefix` in its log (`listening on http://127.0.0.1:PORT`).
    async fn address(&mut self, prefix: &str) -> std::net::SocketAddr {
        let line = self.wait_for(prefix).await;
        let rest = &line[line.find(prefix).expect("prefix") + prefix.len()..];
        let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
        addr.parse().unwrap_or_else(|_| panic!("{}: no address in {line:?}", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.graceful && matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
    }
}

/// Run to completion: (exit code, stdout, stderr).
fn run(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// compose.yaml: a reader for the YAML it is written in

/// The YAML subset compose.yaml uses, read into JSON values: block mappings and sequences by
/// indentation, `key: value`, flow collections in their JSON form (`["serve"]`), quoted and
/// plain scalars, comments, anchors (`&name`), aliases (`*name`) and merge keys (`<<: *name`).
/// Anything else (block scalars, multi-line flow collections, tabs) fails loudly, naming the
/// line: this test must never read the file differently from Compose without noticing.
mod yaml {
    use serde_json::{Map, Value};
    use std::collections::HashMap;

    struct Line {
        no: usize,
        indent: usize,
        text: String,
    }

    pub(super) fn parse(src: &str) -> Value {
        let mut lines = Vec::new();
        for (i, raw) in src.lines().enumerate() {
            assert!(!raw.contains('\t'), "compose.yaml line {}: a tab", i + 1);
            let text = strip_comment(raw);
            if text.trim().is_empty() {
                continue;
            }
            let indent = text.len() - text.trim_start().len();
            lines.push(Line { no: i + 1, indent, text: text.trim().to_string() });
        }
        let mut p = Parser { lines, pos: 0, anchors: HashMap::new() };
        let v = p.block(0);
        if let Some(l) = p.lines.get(p.pos) {
            panic!("compose.yaml line {}: not understood: {}", l.no, l.text);
        }
        v
    }

    /// The line without its comment (`#` at the start or after a blank, outside quotes).
    fn strip_comment(s: &str) -> &str {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (i, c) in s.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if (c == '"' || c == '\'') && (prev.is_whitespace() || "[,:{".contains(prev)) => quote = Some(c),
                None if c == '#' && prev.is_whitespace() => return s[..i].trim_end(),
                None => {}
            }
            prev = c;
        }
        s.trim_end()
    }

    fn is_item(t: &str) -> bool {
        t == "-" || t.starts_with("- ")
    }

    /// `key: rest` (the key plain, the colon followed by a blank or the end).
    fn entry(t: &str) -> Option<(String, &str)> {
        if t.starts_with(['"', '\'', '[', '{']) {
            return None;
        }
        let i = t.find(": ").or_else(|| t.ends_with(':').then(|| t.len() - 1))?;
        Some((t[..i].to_string(), t[i + 1..].trim()))
    }

    struct Parser {
        lines: Vec<Line>,
        pos: usize,
        anchors: HashMap<String, Value>,
    }

    impl Parser {
        fn block(&mut self, indent: usize) -> Value {
            if is_item(&self.lines[self.pos].text) { self.seq(indent) } else { self.map(indent) }
        }

        fn seq(&mut self, indent: usize) -> Value {
            let mut out = Vec::new();
            while let Some(l) = self.lines.get(self.pos) {
                if l.indent != indent || !is_item(&l.text) {
                    assert!(l.indent < indent, "compose.yaml line {}: unexpected indentation", l.no);
                    break;
                }
                let (no, rest) = (l.no, l.text[1..].trim_start().to_string());
                if rest.is_empty() {
                    self.pos += 1;
                    let i = self.lines.get(self.pos).map_or(0, |n| n.indent);
                    assert!(i > indent, "compose.yaml line {no}: an empty item");
                    out.push(self.block(i));
                } else if entry(&rest).is_some() {
                    // A mapping that starts on the dash's line: read it as if the dash were a blank.
                    let col = indent + (l.text.len() - rest.len());
                    self.lines[self.pos] = Line { no, indent: col, text: rest };
                    out.push(self.map(col));
                } else {
                    self.pos += 1;
                    out.push(self.scalar(&rest, no));
                }
            }
            Value::Array(out)
        }

        fn map(&mut self, indent: usize) -> Value {
            let mut m = Map::new();
            let mut merged = Vec::new();
            while let Some(l) = self.lines.get(self.pos) {
                if l.indent < indent {
                    break;
                }
                let no = l.no;
                assert!(l.indent == indent && !is_item(&l.text), "compose.yaml line {no}: unexpected indentation");
                let (key, rest) =
                    entry(&l.text).unwrap_or_else(|| panic!("compose.yaml line {no}: not `key: value`: {}", l.text));
                let rest = rest.to_string();
                self.pos += 1;
                let (anchor, rest) = match rest.strip_prefix('&') {
                    Some(r) => {
                        let (a, r) = r.split_once(' ').unwrap_or((r, ""));
                        (Some(a.to_string()), r.trim().to_string())
                    }
                    None => (None, rest),
                };
                let value = if rest.is_empty() {
                    match self.lines.get(self.pos) {
                        Some(n) if n.indent > indent => {
                            let i = n.indent;
                            self.block(i)
                        }
                        Some(n) if n.indent == indent && is_item(&n.text) => self.seq(indent),
                        _ => Value::Null,
                    }
                } else if let Some(a) = rest.strip_prefix('*') {
                    self.anchors.get(a).cloned().unwrap_or_else(|| panic!("compose.yaml line {no}: unknown alias *{a}"))
                } else {
                    self.scalar(&rest, no)
                };
                if let Some(a) = anchor {
                    self.anchors.insert(a, value.clone());
                }
                if key == "<<" {
                    merged.push(value);
                } else {
                    assert!(m.insert(key.clone(), value).is_none(), "compose.yaml line {no}: {key} given twice");
                }
            }
            // Merged keys never replace the mapping's own.
            for v in merged {
                for (k, x) in v.as_object().expect("<< merges a mapping") {
                    m.entry(k.clone()).or_insert_with(|| x.clone());
                }
            }
            Value::Object(m)
        }

        fn scalar(&self, s: &str, no: usize) -> Value {
            if s.starts_with(['[', '{', '"']) {
                serde_json::from_str(s).unwrap_or_else(|e| {
                    panic!(
                        "compose.yaml line {no}: {s} is outside the YAML this reader takes (JSON-form flow values): {e}"
                    )
                })
            } else if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                Value::String(inner.replace("''", "'"))
            } else {
                assert!(!s.starts_with(['|', '>', '!', '%', '@', '`']), "compose.yaml line {no}: unsupported {s}");
                Value::String(s.to_string())
            }
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().expect("a string").to_string()).collect(),
        Value::Null => vec![],
        other => panic!("expected a list of strings, got {other}"),
    }
}

struct Compose {
    /// The directory holding compose.yaml and what it mounts (a copy, in the topology test).
    dir: PathBuf,
    doc: Value,
    text: String,
}

/// A container path and where it is on this machine.
#[derive(Clone, Debug)]
struct Mount {
    target: String,
    /// What the compose file names: a file or directory next to it, a named volume, a secret's file.
    source: PathBuf,
    /// Where the process started for this service finds it: `source`, or for a config file
    /// the service's own rendered copy.
    host: PathBuf,
    file: bool,
}

/// One service of compose.yaml, as a plain process sees it.
struct Service {
    name: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
}

impl Compose {
    fn load(dir: &Path) -> Compose {
        let text = read(&dir.join("compose.yaml"));
        Compose { dir: dir.to_path_buf(), doc: yaml::parse(&text), text }
    }

    fn svc(&self, name: &str) -> &Value {
        let s = &self.doc["services"][name];
        assert!(s.is_object(), "compose.yaml has no service {name}");
        s
    }

    fn service_names(&self) -> Vec<String> {
        self.doc["services"].as_object().expect("services").keys().cloned().collect()
    }

    /// The service `name` run as instance `run` (its rendered files under `root/run/RUN`, named
    /// volumes under `root/volumes/VOLUME`).
    fn service(&self, name: &str, root: &Path, run: &str) -> Service {
        let s = self.svc(name);
        let mut mounts = Vec::new();
        for v in strings(&s["volumes"]) {
            let parts: Vec<&str> = v.split(':').collect();
            assert!((2..=3).contains(&parts.len()), "{name}: volume {v}");
            let (src, target) = (parts[0], parts[1].to_string());
            if src.starts_with('.') || src.starts_with('/') {
                let source = self.dir.join(src);
                let file = !source.is_dir();
                let host = if file {
                    root.join("run").join(run).join(source.file_name().expect("file name"))
                } else {
                    source.clone()
                };
                mounts.push(Mount { target, source, host, file });
            } else {
                assert!(self.doc["volumes"].get(src).is_some(), "{name}: volume {src} is not declared under volumes:");
                let host = root.join("volumes").join(src);
                mkdir_private(&host);
                mounts.push(Mount { target, source: host.clone(), host, file: false });
            }
        }
        for sec in strings(&s["secrets"]) {
            let f = self.doc["secrets"][&sec]["file"].as_str().unwrap_or_else(|| panic!("secret {sec} has no file"));
            let source = self.dir.join(f);
            mounts.push(Mount {
                target: format!("/run/secrets/{sec}"),
                source: source.clone(),
                host: source,
                file: true,
            });
        }
        let env = match &s["environment"] {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string())).collect(),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    let (k, v) = x.as_str().and_then(|x| x.split_once('=')).expect("KEY=VALUE");
                    (k.to_string(), v.to_string())
                })
                .collect(),
            _ => vec![],
        };
        let mut svc = Service { name: name.to_string(), command: strings(&s["command"]), env, mounts };
        svc.env = svc.env.iter().map(|(k, v)| (k.clone(), map_paths(v, &svc.mounts))).collect();
        svc
    }

    /// The `tether …` command lines of the file's comments (the compose file shows how to use
    /// the topology it starts).
    fn documented_commands(&self) -> Vec<Vec<String>> {
        tether_invocations(&self.text)
    }
}

impl Service {
    fn mount(&self, target: &str) -> &Mount {
        self.mounts
            .iter()
            .find(|m| m.target == target)
            .unwrap_or_else(|| panic!("service {} mounts nothing at {target}", self.name))
    }

    /// Write this service's copy of the config file mounted at `target`: the file with every
    /// container path replaced by its place here, then `edit` (addresses and ports) applied.
    fn render(&self, target: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
        let m = self.mount(target);
        assert!(m.file && m.host != m.source, "{target} is not a config file of {}", self.name);
        write(&m.host, &edit(map_paths(&read(&m.source), &self.mounts)));
        m.host.clone()
    }

    fn args(&self) -> Vec<String> {
        self.command.iter().map(|a| map_paths(a, &self.mounts)).collect()
    }
}

/// `text` with every container path of `mounts` (as a whole path or a prefix of one, standing
/// alone or in quotes) replaced by its place on this machine.
fn map_paths(text: &str, mounts: &[Mount]) -> String {
    let mut ms: Vec<&Mount> = mounts.iter().collect();
    ms.sort_by_key(|m| std::cmp::Reverse(m.target.len()));
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let starts = i == 0 || matches!(bytes[i - 1], b' ' | b'"' | b'\'' | b'=' | b'\t' | b'(');
        if starts && bytes[i] == b'/' {
            for m in &ms {
                let t = m.target.as_bytes();
                if bytes[i..].starts_with(t) {
                    let next = bytes.get(i + t.len()).copied();
                    if next.is_none_or(|c| matches!(c, b'/' | b'"' | b'\'' | b';' | b' ' | b'\n' | b',' | b')')) {
                        out.push_str(m.host.to_str().expect("utf-8 path"));
                        i += t.len();
                        continue 'scan;
                    }
                }
            }
        }
        let c = text[i..].chars().next().expect("char");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// `text` with the one line that sets `key` (`key = …` at the start of a line) set to `value`
/// (TOML, given as written). Panics unless exactly one line sets it.
fn set_key(text: &str, key: &str, value: &str) -> String {
    let is = |l: &str| l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('='));
    assert_eq!(text.lines().filter(|l| is(l)).count(), 1, "one line sets {key}");
    text.lines().map(|l| if is(l) { format!("{key} = {value}") } else { l.to_string() }).collect::<Vec<_>>().join("\n")
        + "\n"
}

/// The value of `key` (`key = "value"`) in a TOML file, unquoted.
fn get_key(text: &str, key: &str) -> String {
    let l = text
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')))
        .unwrap_or_else(|| panic!("no {key} = … line"));
    l.split_once('=').expect("=").1.trim().trim_matches('"').to_string()
}

/// `text` with the commented-out line `# key = …` made live with `value`.
fn uncomment(text: &str, key: &str, value: &str) -> String {
    let is = |l: &str| {
        l.strip_prefix("# ").and_then(|r| r.strip_prefix(key)).is_some_and(|r| r.trim_start().starts_with('='))
    };
    assert_eq!(text.lines().filter(|l| is(l)).count(), 1, "one commented-out {key} line");
    text.lines().map(|l| if is(l) { format!("{key} = {value}") } else { l.to_string() }).collect::<Vec<_>>().join("\n")
        + "\n"
}

/// `text` with the one line whose words start with `words` changed by `f`.
fn edit_line(text: &str, words: &[&str], f: impl Fn(&str) -> String) -> String {
    let is = |l: &str| l.split_whitespace().take(words.len()).eq(words.iter().copied());
    assert_eq!(text.lines().filter(|l| is(l)).count(), 1, "one line starts with {words:?}");
    text.lines().map(|l| if is(l) { f(l) } else { l.to_string() }).collect::<Vec<_>>().join("\n") + "\n"
}

/// The gateway's introspection variant, as gateway.toml's comment describes it: the
/// commented-out lines made live, in place of `auth_methods = ["bearer"]`.
fn introspection_variant(text: &str, client_id: &str, client_secret: &str) -> String {
    let text = text
        .lines()
        .filter(|l| !l.starts_with("auth_methods ") && !l.starts_with("auth_methods="))
        .collect::<Vec<_>>()
        .join("\n");
    let text = uncomment(&text, "auth_methods", r#"["bearer", "introspection"]"#);
    let text = uncomment(&text, "introspect_jwt_tokens", "true");
    let text = uncomment(&text, "client_id", &format!("{client_id:?}"));
    uncomment(&text, "client_secret", &format!("{client_secret:?}"))
}

// ---------------------------------------------------------------------------------------------
// The binary's own word on its commands

fn help(words: &[&str]) -> String {
    let mut args: Vec<&str> = words.to_vec();
    args.push("--help");
    let (code, out, err) =
        run(command(Path::new(BIN), &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[], Path::new("/")));
    assert_eq!(code, 0, "tether {} --help: {err}", words.join(" "));
    out
}

/// The names under "Commands:" of a help text.
fn commands_of(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// Whether `help` lists `flag` (as a whole word), and whether it takes a value.
fn flag_in(help: &str, flag: &str) -> Option<bool> {
    let mut rest = help;
    while let Some(i) = rest.find(flag) {
        let after = &rest[i + flag.len()..];
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let next = after.chars().next();
        if before_ok && next.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-' && c != '_') {
            return Some(after.starts_with(" <"));
        }
        rest = &rest[i + flag.len()..];
    }
    None
}

/// Assert that `args` (what follows `tether`) names subcommands the binary has, and only flags
/// their help lists. Global flags may come before the subcommand.
fn assert_accepted(args: &[String], whence: &str) {
    let top = help(&[]);
    let mut i = 0;
    while i < args.len() && args[i].starts_with("--") {
        let flag = args[i].split('=').next().expect("flag");
        let takes = flag_in(&top, flag).unwrap_or_else(|| panic!("{whence}: tether has no global flag {flag}"));
        i += if takes && !args[i].contains('=') { 2 } else { 1 };
    }
    let mut path: Vec<&str> = Vec::new();
    let mut h = top;
    while let Some(w) = args.get(i) {
        if !commands_of(&h).contains(w) {
            break;
        }
        path.push(w);
        h = help(&path);
        i += 1;
    }
    assert!(!path.is_empty(), "{whence}: `tether {}` names no subcommand of tether", args.join(" "));
    for a in &args[i..] {
        if a == "--" {
            break;
        }
        if let Some(flag) = a.strip_prefix("--").map(|f| format!("--{}", f.split('=').next().expect("flag"))) {
            assert!(
                flag_in(&h, &flag).is_some(),
                "{whence}: `tether {}` has no flag {flag} (tether {} --help)",
                path.join(" "),
                path.join(" ")
            );
        }
    }
}

/// A file's logical lines: `\` continuations joined, comment markers (`#`) dropped so that the
/// commands shown in comments are read too.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw.trim().trim_start_matches('#').trim();
        match l.strip_suffix('\\') {
            Some(s) => {
                cur.push_str(s);
                cur.push(' ');
            }
            None => {
                cur.push_str(l);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// Shell words (quotes removed; a word in backticks ends the command it is part of).
fn words(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            None => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|w| {
            let ends = w.ends_with('`') || w.ends_with("`,") || w.ends_with("`.") || w.ends_with("`)");
            (w.trim_matches(|c| c == '`' || c == '(').trim_end_matches([',', ')', ':']).to_string(), ends)
        })
        .collect()
}

/// Every `tether …` (or `…/tether …`) command line in `text`, comments included: the words after
/// the binary up to the end of the command (a pipe, redirection, `&&`, `;` or closing backtick).
/// Only those naming a subcommand (after optional global flags) are kept; prose like "tether
/// containers" is not a command.
fn tether_invocations(text: &str) -> Vec<Vec<String>> {
    let top = help(&[]);
    let subs = commands_of(&top);
    let mut out = Vec::new();
    for line in logical_lines(text) {
        let ws = words(&line);
        for (i, (w, ends)) in ws.iter().enumerate() {
            if *ends || !(w == "tether" || w.ends_with("/tether")) {
                continue;
            }
            let mut args = Vec::new();
            for (a, ends) in &ws[i + 1..] {
                if ["|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", "#"].contains(&a.as_str()) {
                    break;
                }
                args.push(a.clone());
                if *ends {
                    break;
                }
            }
            // Skip global flags to find the subcommand.
            let mut j = 0;
            while j < args.len() && args[j].starts_with("--") {
                let takes = flag_in(&top, args[j].split('=').next().expect("flag")).unwrap_or(false);
                j += if takes && !args[j].contains('=') { 2 } else { 1 };
            }
            if args.get(j).is_some_and(|a| subs.contains(a)) {
                out.push(args);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Certificates and clients

/// The DER of the first certificate of a PEM file.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM base64")
}

/// RFC 8705 `x5t#S256`: base64url SHA-256 of the certificate's DER.
fn thumbprint(pem: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pem_der(pem));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// An HTTPS client for `https://localhost:PORT` trusting `ca_pem`, presenting `identity` if given.
fn https_client(ca_pem: &str, port: u16, identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

// ---------------------------------------------------------------------------------------------
// 1. The compose topology as plain processes

/// A node's log line for each token it issued (the access log, `[log] access = true`).
const TOKEN_ISSUED: &str = "access method=POST path=/oauth2/token status=200";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_topology_as_processes() {
    let t0 = Instant::now();
    let nginx = need_tool("nginx", &["/usr/sbin/nginx", "/usr/local/sbin/nginx"], "nginx-light");
    need_tool("openssl", &[], "openssl");
    let Some(db) = tether_testkit::test_database().await else {
        eprintln!(
            "the compose topology (two nodes on one database) needs PostgreSQL (TETHER_TEST_POSTGRES_URL); skipped on SQLite"
        );
        return;
    };

    // The compose directory, copied; compose.yaml is read from the copy.
    let d = TempDir::new("deploy");
    let root = d.path().to_path_buf();
    let dir = root.join("compose");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(repo().join("deploy/compose")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let compose = Compose::load(&dir);

    // setup: `sh /setup/setup.sh /setup` with the compose directory mounted at /setup (the
    // container first installs openssl, which this machine has).
    let setup = compose.service("setup", &root, "setup");
    let script = setup.command.last().expect("setup command").clone();
    let (_, run_setup) = script.rsplit_once("&& ").expect("setup: `… && sh /setup/setup.sh /setup`");
    assert_eq!(run_setup, "sh /setup/setup.sh /setup", "the setup service runs setup.sh on the mounted directory");
    let argv: Vec<String> = run_setup.split(' ').map(|w| map_paths(w, &setup.mounts)).collect();
    let (code, _, err) = run(command(Path::new(&argv[0]), &argv[1..], &[], &dir));
    assert_eq!(code, 0, "setup.sh: {err}");
    let ca_pem = read(&dir.join("certs/ca.pem"));
    let client_identity = read(&dir.join("certs/client.pem")) + &read(&dir.join("certs/client-key.pem"));
    let client_thumbprint = thumbprint(&read(&dir.join("certs/client.pem")));
    let master_key = read(&dir.join("secrets/master.key")).trim().to_string();
    assert_eq!(master_key.len(), 64, "setup.sh writes the master key as 64 hex characters");

    // Every address of the topology, on loopback. The nodes' ports are theirs to pick (port 0);
    // nginx's and the gateways' are needed before they start (issuer, public_url).
    let edge_port = free_port();
    let issuer = format!("https://localhost:{edge_port}");
    let node_config = |text: String| {
        let text = set_key(&text, "issuer", &format!("{issuer:?}"));
        let text = set_key(&text, "database_url", &format!("{db:?}"));
        let text = set_key(&text, "http_listen", "\"127.0.0.1:0\"");
        let text = set_key(&text, "listen", "\"127.0.0.1:0\"");
        set_key(&text, "metrics_listen", "\"127.0.0.1:0\"")
    };
    let config_target = "/etc/tether/tether.toml";

    // init: the schema and the signing keys, sealed under the master key secret.
    let init = compose.service("init", &root, "init");
    assert_eq!(init.command, ["init"]);
    assert!(init.env.iter().any(|(k, _)| k == "TETHER_CONFIG"), "init reads its config from TETHER_CONFIG");
    init.render(config_target, node_config);
    let (code, out, err) = run(command(Path::new(BIN), &init.args(), &init.env, &root));
    assert_eq!(code, 0, "tether init: {err}");
    let secret = init.mount("/run/secrets/master_key").host.display().to_string();
    assert!(out.contains(&format!("master key: {secret}")), "init uses the master key secret: {out}");
    assert_eq!(read(&dir.join("secrets/master.key")).trim(), master_key, "and leaves it as it is");

    // node1 exactly as compose runs it (master key: the secret file); node2 as
    // docs/operations.md runs a plain process: TETHER_MASTER_KEY, in place of the file
    // (its master_key_file names a path that does not exist here).
    let node1 = compose.service("node1", &root, "node1");
    let mut node2 = compose.service("node2", &root, "node2");
    assert_eq!(node1.command, ["serve"]);
    assert_eq!(node2.command, ["serve"]);
    node2.mounts.retain(|m| m.target != "/run/secrets/master_key");
    node2.env.push(("TETHER_MASTER_KEY".into(), master_key.clone()));
    node1.render(config_target, node_config);
    node2.render(config_target, node_config);
    assert_ne!(node1.mount("/data").host, node2.mount("/data").host, "each node has its own data volume");

    // The apps, with the commands the files show, run like `docker compose exec node1 tether …`.
    let documented = compose.documented_commands();
    let demo_cmd = documented
        .iter()
        .find(|c| c.starts_with(&["app".into(), "create".into(), "--name".into(), "demo".into()]))
        .expect("compose.yaml shows `tether app create --name demo …`")
        .clone();
    assert!(demo_cmd.windows(2).any(|w| w == ["--binding", "certificate"]), "{demo_cmd:?}");
    let gw_doc = tether_invocations(&read(&dir.join("gateway.toml")));
    let gw_cmd = gw_doc
        .iter()
        .find(|c| c.starts_with(&["app".into(), "create".into()]) && c.contains(&"--introspect-any".into()))
        .expect("gateway.toml shows `tether app create … --introspect-any`")
        .clone();
    let create = |args: &[String]| -> (String, String) {
        let (code, out, err) = run(command(Path::new(BIN), args, &node1.env, &root));
        assert_eq!(code, 0, "tether {}: {err}", args.join(" "));
        let v: Value = serde_json::from_str(&out).expect("--json");
        (v["client_id"].as_str().unwrap().to_string(), v["client_secret"].as_str().unwrap().to_string())
    };
    let demo = create(&demo_cmd);
    let gw_app = create(&gw_cmd);

    let mut n1 = Proc::spawn("node1", command(Path::new(BIN), &node1.args(), &node1.env, &root), false);
    let mut n2 = Proc::spawn("node2", command(Path::new(BIN), &node2.args(), &node2.env, &root), false);
    let n1_addr = n1.address("listening on http://").await;
    let n2_addr = n2.address("listening on http://").await;

    // The nodes' healthcheck, as compose runs it (the port is this node's).
    let node_health = strings(&compose.svc("node1")["healthcheck"]["test"]);
    assert_eq!(node_health[..3], ["CMD", IMAGE_BIN, "health"]);
    let http_listen = get_key(&read(&dir.join("node.toml")), "http_listen");
    let listen_port = http_listen.rsplit(':').next().unwrap();
    for addr in [n1_addr, n2_addr] {
        let args: Vec<String> = node_health[2..]
            .iter()
            .map(|a| a.replace(&format!("127.0.0.1:{listen_port}"), &addr.to_string()))
            .collect();
        assert!(
            args.iter().any(|a| a.contains(&addr.to_string())),
            "the healthcheck asks port {listen_port}: {args:?}"
        );
        let (code, out, err) = run(command(Path::new(BIN), &args, &[], &root));
        assert_eq!(code, 0, "node healthcheck {args:?}: {out}{err}");
    }

    // nginx ("edge"): compose's command, with the prefix, config and pid file of a plain process.
    let edge = compose.service("edge", &root, "edge");
    assert_eq!(edge.command, ["nginx", "-g", "daemon off;"]);
    let edge_run = root.join("run/edge");
    let conf = edge.render("/etc/nginx/nginx.conf", |text| {
        let text =
            edit_line(&text, &["listen"], |l| l.replacen("listen 9443", &format!("listen 127.0.0.1:{edge_port}"), 1));
        let text = edit_line(&text, &["server", &format!("node1:{listen_port}")], |l| {
            l.replacen(&format!("node1:{listen_port}"), &n1_addr.to_string(), 1)
        });
        let text = edit_line(&text, &["server", &format!("node2:{listen_port}")], |l| {
            l.replacen(&format!("node2:{listen_port}"), &n2_addr.to_string(), 1)
        });
        // Temporary files in the test's directory rather than in /tmp.
        assert!(text.contains("/tmp/tether-edge-"));
        text.replace("/tmp/tether-edge-", &format!("{}/tmp-", edge_run.display()))
    });
    let mut nginx_args = vec!["-p".to_string(), format!("{}/", edge_run.display())];
    nginx_args.extend(["-c".to_string(), conf.display().to_string(), "-e".into(), "stderr".into()]);
    nginx_args.extend(["-g".to_string(), format!("daemon off; pid {}/nginx.pid;", edge_run.display())]);
    let mut ng = Proc::spawn("nginx", command(&nginx, &nginx_args, &[], &edge_run), true);
    let anon = https_client(&ca_pem, edge_port, None);
    let holder = https_client(&ca_pem, edge_port, Some(&client_identity));
    until("nginx in front of the nodes", Duration::from_secs(20), || {
        ng.assert_running();
        let anon = anon.clone();
        let url = format!("{issuer}/healthz");
        async move { anon.get(url).send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    let disco: Value =
        anon.get(format!("{issuer}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(disco["issuer"], issuer.as_str(), "one issuer, nginx's URL, on every node");

    // Tokens for the demo app, as the compose file's curl asks: through nginx, with a client
    // certificate (the node learns it from nginx's header). Which node issued each one: its
    // access log says.
    let second = tether_testkit::client_cert("second-holder");
    let second_holder = https_client(&ca_pem, edge_port, Some(&second.identity_pem));
    let issue = |client: &reqwest::Client| {
        let (client, demo, url) = (client.clone(), demo.clone(), format!("{issuer}/oauth2/token"));
        let before = (n1.count(TOKEN_ISSUED), n2.count(TOKEN_ISSUED));
        let (n1, n2) = (n1.log.clone(), n2.log.clone());
        async move {
            let r = client
                .post(url)
                .basic_auth(&demo.0, Some(&demo.1))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "token through nginx");
            let t: Value = r.json().await.unwrap();
            let at = t["access_token"].as_str().unwrap().to_string();
            let count =
                |log: &Arc<Mutex<String>>| log.lock().unwrap().lines().filter(|l| l.contains(TOKEN_ISSUED)).count();
            let node = until("the access log line of the token", Duration::from_secs(10), || {
                let now = (count(&n1), count(&n2));
                async move {
                    match (now.0 - before.0, now.1 - before.1) {
                        (1, 0) => Some(0),
                        (0, 1) => Some(1),
                        _ => None,
                    }
                }
            })
            .await;
            (at, node)
        }
    };
    let nodes = [format!("http://{n1_addr}"), format!("http://{n2_addr}")];
    let http = reqwest::Client::new();
    let introspect_with = |client: &reqwest::Client, base: &str, token: &str| {
        let (http, url, token, gw_app) =
            (client.clone(), format!("{base}/oauth2/introspect"), token.to_string(), gw_app.clone());
        async move {
            let r =
                http.post(url).basic_auth(&gw_app.0, Some(&gw_app.1)).form(&[("token", token)]).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let introspect = |base: &str, token: &str| introspect_with(&http, base, token);

    // T1 is bound to the certificate nginx forwarded, and known to both nodes (one database).
    let (t1, t1_node) = issue(&holder).await;
    let claims = tether_testkit::jwt_claims(&t1);
    assert_eq!(claims["cnf"]["x5t#S256"], client_thumbprint.as_str(), "bound to the certificate nginx forwarded");
    assert_eq!(claims["iss"], issuer.as_str());
    for base in &nodes {
        let v = introspect(base, &t1).await;
        assert_eq!(v["active"], true, "{base}: {v}");
        assert_eq!(v["cnf"]["x5t#S256"], client_thumbprint.as_str(), "{v}");
    }
    // T2, the next request: nginx sends it to the other node. A new JWT for the same
    // certificate revokes the previous one (docs/token-binding.md), so the node that issued T1
    // sees it inactive at once.
    let (t2, t2_node) = issue(&holder).await;
    assert_ne!(t1_node, t2_node, "nginx balances across both nodes");
    assert_eq!(tether_testkit::jwt_claims(&t2)["cnf"]["x5t#S256"], client_thumbprint.as_str());
    assert_eq!(introspect(&nodes[t1_node], &t1).await, serde_json::json!({"active": false}));
    for base in &nodes {
        assert_eq!(introspect(base, &t2).await["active"], true, "{base}");
    }
    // T3, bound to another certificate.
    let (t3, _) = issue(&second_holder).await;
    assert_eq!(tether_testkit::jwt_claims(&t3)["cnf"]["x5t#S256"], second.thumbprint.as_str());
    assert_eq!(introspect(&nodes[t2_node], &t2).await["active"], true, "another certificate's token leaves T2 alone");

    // nginx replaces a client's own X-Client-Cert: without a certificate, none reaches the node.
    let forged: String = url::form_urlencoded::byte_serialize(read(&dir.join("certs/client.pem")).as_bytes()).collect();
    let r = anon
        .post(format!("{issuer}/oauth2/token"))
        .basic_auth(&demo.0, Some(&demo.1))
        .header("x-client-cert", forged)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    tether_testkit::assert_oauth_error(r, 400, "invalid_request").await;

    // The gateway, twice: gateway.toml as shipped (JWTs checked against the JWKS), and its
    // documented introspection variant (the commented-out lines made live).
    let upstream = tether_testkit::echo_upstream().await;
    let gw_config = |port: u16, variant: bool| {
        let (issuer, gw_app) = (issuer.clone(), gw_app.clone());
        move |text: String| {
            let text = set_key(&text, "listen", &format!("\"127.0.0.1:{port}\""));
            let text = set_key(&text, "public_url", &format!("\"https://localhost:{port}\""));
            let text = set_key(&text, "metrics_listen", "\"127.0.0.1:0\"");
            let text = set_key(&text, "issuer", &format!("{issuer:?}"));
            let text = set_key(&text, "upstream", &format!("\"http://{upstream}\""));
            if variant { introspection_variant(&text, &gw_app.0, &gw_app.1) } else { text }
        }
    };
    let mut gateways = Vec::new();
    for (run_name, variant) in [("gateway", false), ("gateway-introspection", true)] {
        let port = free_port();
        let svc = compose.service("gateway", &root, run_name);
        assert_eq!(svc.command[0], "gateway");
        let config = svc.render("/etc/tether/gateway.toml", gw_config(port, variant));
        let args = svc.args();
        assert!(args.contains(&config.display().to_string()), "the gateway's --config is its mounted file: {args:?}");
        let mut p = Proc::spawn(run_name, command(Path::new(BIN), &args, &svc.env, &root), false);
        let addr = p.address("listening on https://").await;
        assert_eq!(addr.port(), port);
        let metrics = p.address("health and metrics on http://").await;
        until("the gateway's /readyz", Duration::from_secs(20), || {
            let url = format!("http://{metrics}/readyz");
            async move { reqwest::get(url).await.ok().filter(|r| r.status() == 200) }
        })
        .await;
        gateways.push((p, port, metrics));
    }
    // The gateway's healthcheck, as compose runs it.
    let gw_health = strings(&compose.svc("gateway")["healthcheck"]["test"]);
    assert_eq!(gw_health[..3], ["CMD", IMAGE_BIN, "health"]);
    let gw_metrics_port =
        get_key(&read(&dir.join("gateway.toml")), "metrics_listen").rsplit(':').next().unwrap().to_string();
    let args: Vec<String> = gw_health[2..]
        .iter()
        .map(|a| a.replace(&format!("127.0.0.1:{gw_metrics_port}"), &gateways[0].2.to_string()))
        .collect();
    let (code, out, err) = run(command(Path::new(BIN), &args, &[], &root));
    assert_eq!(code, 0, "gateway healthcheck {args:?}: {out}{err}");

    let gw_ca = ca_pem.clone();
    let call = |port: u16, token: &str, identity: Option<&str>| {
        let client = https_client(&gw_ca, port, identity);
        let (url, token) = (format!("https://localhost:{port}/orders?x=1"), token.to_string());
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let (shipped, introspecting) = (gateways[0].1, gateways[1].1);
    let r = call(shipped, &t2, Some(&client_identity)).await;
    assert_eq!(r.status(), 200, "the holder of the certificate passes");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/orders", "the upstream answered: {echo}");
    assert_eq!(call(shipped, &t2, None).await.status(), 401, "no certificate, no entry");
    assert_eq!(call(shipped, &t2, Some(&second.identity_pem)).await.status(), 401, "another certificate, no entry");
    // The introspecting gateway sees T3 (never T2 before T2 is revoked: it would keep an active
    // answer for cache_ttl).
    assert_eq!(call(introspecting, &t3, Some(&second.identity_pem)).await.status(), 200);
    assert_eq!(call(introspecting, &t3, None).await.status(), 401);

    // T2 revoked through the node that did not issue it: inactive at once on the one that did.
    let r = http
        .post(format!("{}/oauth2/revoke", nodes[1 - t2_node]))
        .basic_auth(&demo.0, Some(&demo.1))
        .form(&[("token", t2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&nodes[t2_node], &t2).await, serde_json::json!({"active": false}));
    assert_eq!(introspect_with(&anon, &issuer, &t2).await, serde_json::json!({"active": false}), "through nginx too");
    assert_eq!(introspect(&nodes[t2_node], &t3).await["active"], true, "only that token");
    // The introspecting gateway refuses it; the other token still passes.
    assert_eq!(call(introspecting, &t2, Some(&client_identity)).await.status(), 401, "revoked: refused");
    assert_eq!(call(introspecting, &t3, Some(&second.identity_pem)).await.status(), 200);
    // As gateway.toml says, the shipped bearer-only gateway checks JWTs against the JWKS alone:
    // a revoked JWT passes there until it expires (the reason for the introspection variant).
    assert_eq!(call(shipped, &t2, Some(&client_identity)).await.status(), 200);

    for (p, ..) in &mut gateways {
        p.assert_running();
    }
    for p in [&mut n1, &mut n2, &mut ng] {
        p.assert_running();
    }
    eprintln!("compose topology as processes: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 2. systemd units

#[test]
fn systemd_units_verify() {
    let t0 = Instant::now();
    let analyze = need_tool("systemd-analyze", &["/usr/bin/systemd-analyze", "/bin/systemd-analyze"], "systemd");
    let sysusers = need_tool("systemd-sysusers", &["/usr/bin/systemd-sysusers", "/bin/systemd-sysusers"], "systemd");
    let units_dir = repo().join("deploy/systemd");
    let d = TempDir::new("units");
    let units = ["tether.service", "tether-gateway.service"];
    let mut paths = Vec::new();
    let mut users = BTreeSet::new();
    for unit in units {
        let text = read(&units_dir.join(unit));
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for opt in ["ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "Type=exec"] {
            assert!(lines.contains(&opt), "{unit} has {opt}");
        }
        let state = lines
            .iter()
            .find_map(|l| l.strip_prefix("StateDirectory="))
            .unwrap_or_else(|| panic!("{unit}: StateDirectory="));
        assert!(!state.is_empty() && !state.contains('/'), "{unit}: StateDirectory={state}");
        users.insert(lines.iter().find_map(|l| l.strip_prefix("User=")).expect("User=").to_string());
        // ExecStart: the installed binary, with a subcommand and flags it has.
        let exec: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ExecStart=")).collect();
        assert_eq!(exec.len(), 1, "{unit}: one ExecStart");
        let argv: Vec<String> = exec[0].split_whitespace().map(String::from).collect();
        assert_eq!(argv[0], IMAGE_BIN, "{unit} runs the binary where its install steps put it");
        assert_accepted(&argv[1..], unit);
        for cmd in tether_invocations(&text) {
            assert_accepted(&cmd, &format!("{unit} (a command line)"));
        }
        // The copy systemd-analyze checks: only ExecStart's path differs (it must exist).
        let patched = text.replace(&format!("ExecStart={IMAGE_BIN} "), &format!("ExecStart={BIN} "));
        let p = d.path().join(unit);
        write(&p, &patched);
        paths.push(p);
    }
    let mut args = vec!["verify".to_string(), "--man=no".into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let (code, out, err) = run(command(&analyze, &args, &[], d.path()));
    // Unknown keys and bad values are only warnings (exit 0): any line about the units fails too.
    let about: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| units.iter().any(|u| l.contains(u)) || l.contains(d.path().to_str().unwrap()))
        .collect();
    assert!(code == 0 && about.is_empty(), "systemd-analyze verify (exit {code}):\n{out}{err}");

    // The sandbox: docs/operations.md promises an "OK" exposure (below 2.0; 1.4 when written).
    for p in &paths {
        let args = vec!["security".into(), "--offline=yes".into(), "--no-pager".into(), p.display().to_string()];
        let (code, out, err) = run(command(&analyze, &args, &[], d.path()));
        let level: f64 = out
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for ").map(|(_, r)| r.to_string()))
            .and_then(|r| r.split(": ").nth(1).and_then(|x| x.split_whitespace().next()).and_then(|x| x.parse().ok()))
            .unwrap_or_else(|| panic!("systemd-analyze security {} (exit {code}):\n{out}{err}", p.display()));
        assert!(level < 2.0, "{}: exposure {level}, more than docs/operations.md's \"OK\":\n{out}", p.display());
        eprintln!("{}: exposure {level}", p.file_name().unwrap().to_string_lossy());
    }

    // tether.sysusers creates the users the units run as.
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let sysusers_file = units_dir.join("tether.sysusers");
    let args = vec!["--dry-run".into(), format!("--root={}", root.display()), sysusers_file.display().to_string()];
    let (code, out, err) = run(command(&sysusers, &args, &[], d.path()));
    assert_eq!(code, 0, "systemd-sysusers --dry-run: {out}{err}");
    for u in &users {
        assert!(
            format!("{out}{err}").contains(&format!("Creating user '{u}'")),
            "tether.sysusers creates {u}:\n{out}{err}"
        );
    }
    eprintln!("systemd units verified: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 3. Dockerfile and compose.yaml

/// One Dockerfile instruction: its stage (0 = the first FROM), keyword, arguments (continuations
/// joined) and heredoc body.
#[derive(Debug)]
struct Instr {
    stage: usize,
    keyword: String,
    args: String,
    heredoc: Option<String>,
}

fn dockerfile(text: &str) -> Vec<Instr> {
    let mut out: Vec<Instr> = Vec::new();
    let mut lines = text.lines();
    let mut stage = 0;
    while let Some(l) = lines.next() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut full = String::new();
        let mut cur = t.to_string();
        loop {
            match cur.strip_suffix('\\') {
                Some(s) => {
                    full.push_str(s.trim_end());
                    full.push(' ');
                    // Comment lines inside a continuation are dropped, as Docker does.
                    cur = loop {
                        let n = lines.next().expect("continuation").trim();
                        if !n.starts_with('#') {
                            break n.to_string();
                        }
                    };
                }
                None => {
                    full.push_str(&cur);
                    break;
                }
            }
        }
        let (keyword, args) = full.split_once(' ').unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        let heredoc = args.split_whitespace().find_map(|w| w.strip_prefix("<<")).map(|tag| {
            let tag = tag.trim_start_matches('-').trim_matches('"');
            let mut body = String::new();
            for b in lines.by_ref() {
                if b.trim() == tag {
                    return body;
                }
                body.push_str(b);
                body.push('\n');
            }
            panic!("Dockerfile: heredoc {tag} never ends");
        });
        if keyword == "FROM" && !out.is_empty() {
            stage += 1;
        }
        out.push(Instr { stage, keyword, args: args.trim().to_string(), heredoc });
    }
    out
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not the exec (JSON) form: {args}: {e}"))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches(['/', '"']).parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_and_compose_are_consistent() {
    let t0 = Instant::now();
    need_tool("openssl", &[], "openssl");
    let root = repo();
    let text = read(&root.join("Dockerfile"));
    assert!(
        text.lines().next().is_some_and(|l| l.starts_with("# syntax=docker/dockerfile:1")),
        "heredocs and RUN --mount need the dockerfile:1 syntax directive on the first line"
    );
    let df = dockerfile(&text);
    let last = df.iter().map(|i| i.stage).max().unwrap();
    assert!(last >= 1, "a multi-stage build");
    let froms: Vec<&Instr> = df.iter().filter(|i| i.keyword == "FROM").collect();
    let build_stage =
        froms[0].args.rsplit_once(" AS ").or_else(|| froms[0].args.rsplit_once(" as ")).expect("FROM … AS build").1;
    let build = |kw: &'static str| df.iter().filter(move |i| i.stage == 0 && i.keyword == kw);
    let fin = |kw: &str| df.iter().filter(move |i| i.stage == last && i.keyword == kw).collect::<Vec<_>>();
    let run_build = build("RUN").find(|i| i.args.contains("cargo build")).expect("the build stage runs cargo build");
    assert!(run_build.args.contains("cargo build --release --locked -p tether"), "{}", run_build.args);
    assert!(
        run_build.args.contains(&format!("/out{IMAGE_BIN}")),
        "the binary is installed at {IMAGE_BIN}: {}",
        run_build.args
    );
    // The build context holds only what the build stage copies: everything the build reads must be there.
    let copied: Vec<String> =
        build("COPY").flat_map(|i| i.args.split_whitespace().map(String::from).collect::<Vec<_>>()).collect();
    for f in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "crates"] {
        assert!(copied.iter().any(|c| c == f), "the build stage copies {f}");
    }
    let members = read(&root.join("Cargo.toml"));
    assert!(
        members.contains("members = [\"crates/*\"]"),
        "every workspace member is under crates/ (all the image copies)"
    );
    // build.rs names the commit from TETHER_GIT_COMMIT where there is no .git (the build context has none).
    assert!(
        build("ARG").any(|i| i.args.starts_with("TETHER_GIT_COMMIT")),
        "the build stage takes ARG TETHER_GIT_COMMIT"
    );
    assert!(
        fin("COPY").iter().any(|i| i.args.contains(&format!("--from={build_stage}"))),
        "the runtime stage copies from the {build_stage} stage"
    );

    // Never root; the same uid setup.sh gives the secrets to.
    let user = fin("USER").last().expect("USER in the runtime stage").args.clone();
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "USER {user}: not root");
    let setup = read(&root.join("deploy/compose/setup.sh"));
    assert_eq!(
        get_key(&setup.replace("RUNTIME_UID=", "RUNTIME_UID = "), "RUNTIME_UID").split_whitespace().next(),
        Some(uid)
    );

    // The image's config, its data volume, its ports.
    let config_copy = fin("COPY").into_iter().find(|i| i.heredoc.is_some()).expect("the image's config (COPY <<EOF)");
    let config_path = config_copy.args.split_whitespace().last().unwrap().to_string();
    let image_config = config_copy.heredoc.clone().unwrap();
    let env = fin("ENV").iter().map(|i| i.args.clone()).collect::<Vec<_>>().join(" ");
    assert!(
        env.split_whitespace().any(|e| e == format!("TETHER_CONFIG={config_path}")),
        "ENV TETHER_CONFIG={config_path}"
    );
    let volume = fin("VOLUME").last().expect("VOLUME").args.clone();
    let volumes: Vec<String> = if volume.starts_with('[') { exec_form(&volume) } else { vec![volume] };
    assert_eq!(volumes, ["/data"]);
    assert_eq!(get_key(&image_config, "data_dir"), "/data", "the image's data directory is the volume");
    let d = TempDir::new("image");
    let cfg_file = d.path().join("tether.toml");
    write(&cfg_file, &image_config);
    let settings = tether_server::Settings::resolve(
        &tether_server::Overrides::default(),
        tether_server::FileConfig::load(&cfg_file).expect("the image's config loads"),
    )
    .expect("the image's config resolves");
    let node_toml = read(&root.join("deploy/compose/node.toml"));
    let gw_defaults = tether_gateway::Config::from_file(tether_gateway::FileConfig {
        issuer: Some("https://localhost:9443".into()),
        upstream: Some("http://127.0.0.1:1".into()),
        auth_methods: Some(vec!["bearer".into()]),
        ..Default::default()
    })
    .expect("gateway defaults");
    let gw_toml_path = root.join("deploy/compose/gateway.toml");
    let gw_toml = read(&gw_toml_path);
    let expected: BTreeSet<u16> = [
        settings.listen.port(),
        settings.metrics_listen.expect("metrics").port(),
        port_of(&get_key(&node_toml, "http_listen")),
        gw_defaults.listen.port(),
        gw_defaults.metrics_listen.expect("gateway metrics").port(),
    ]
    .into();
    let exposed: BTreeSet<u16> = fin("EXPOSE")
        .iter()
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("port"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(exposed, expected, "EXPOSE: serve's listen and metrics, http_listen, the gateway's listen and metrics");
    assert_eq!(port_of(&get_key(&gw_toml, "listen")), gw_defaults.listen.port(), "gateway.toml: the default port");
    assert_eq!(port_of(&get_key(&gw_toml, "metrics_listen")), gw_defaults.metrics_listen.unwrap().port());

    // HEALTHCHECK, ENTRYPOINT, CMD: exec form, the installed binary, commands it has.
    let hc = fin("HEALTHCHECK").last().expect("HEALTHCHECK").args.clone();
    let hc_cmd = exec_form(hc.split_once("CMD ").expect("HEALTHCHECK … CMD [...]").1);
    assert_eq!(hc_cmd, [IMAGE_BIN, "health"]);
    help(&["health"]);
    let entry = exec_form(&fin("ENTRYPOINT").last().expect("ENTRYPOINT").args);
    assert_eq!(entry, [IMAGE_BIN]);
    let cmd = exec_form(&fin("CMD").last().expect("CMD").args);
    assert_accepted(&cmd, "Dockerfile CMD");
    for c in tether_invocations(&text) {
        assert_accepted(&c, "a Dockerfile comment");
    }

    // The HEALTHCHECK works with the image's own config: `tether serve` (CMD) with the image's
    // TETHER_CONFIG, its data directory and port moved here, then `tether health` → 0; stopped → 1.
    let port = free_port();
    let data = d.path().join("data");
    mkdir_private(&data);
    let mut local = image_config.clone();
    local = set_key(&local, "data_dir", &format!("{:?}", data.display().to_string()));
    local = set_key(&local, "listen", &format!("\"127.0.0.1:{port}\""));
    local = set_key(&local, "metrics_listen", "\"127.0.0.1:0\"");
    write(&cfg_file, &local);
    let env = vec![("TETHER_CONFIG".to_string(), cfg_file.display().to_string())];
    let mut serve = Proc::spawn("serve (image config)", command(Path::new(BIN), &cmd, &env, d.path()), false);
    serve.wait_for("listening on https://").await;
    let health = |env: &Vec<(String, String)>| run(command(Path::new(BIN), &hc_cmd[1..], env, d.path()));
    let (code, out, err) = health(&env);
    assert_eq!(code, 0, "HEALTHCHECK against the image's config: {out}{err}");
    drop(serve);
    let (code, _, _) = health(&env);
    assert_eq!(code, 1, "HEALTHCHECK of a stopped server");

    // compose.yaml
    let dir = root.join("deploy/compose");
    let work = TempDir::new("compose-static");
    let copy = work.path().join("compose");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
    }
    let compose = Compose::load(&copy);
    let image = &compose.doc["x-tether-image"];
    assert_eq!(
        dir.join(image["build"]["context"].as_str().unwrap())
            .join(image["build"]["dockerfile"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        root.join("Dockerfile"),
        "compose builds the repository's Dockerfile"
    );
    // Every config file compose mounts is in deploy/compose; setup.sh makes the rest (certs, secrets).
    let names = compose.service_names();
    for name in &names {
        for v in strings(&compose.svc(name)["volumes"]) {
            let src = v.split(':').next().unwrap();
            if src.starts_with('.') && !src.ends_with('/') && src != "./certs" {
                assert!(dir.join(src).is_file(), "{name} mounts {src}, which deploy/compose lacks");
            }
        }
    }
    let (code, _, err) = run(command(
        Path::new("sh"),
        &[copy.join("setup.sh").display().to_string(), copy.display().to_string()],
        &[],
        &copy,
    ));
    assert_eq!(code, 0, "setup.sh: {err}");
    let tether_image = image["image"].as_str().unwrap();
    let mut subcommands_seen = BTreeSet::new();
    for name in &names {
        let svc = compose.service(name, work.path(), name);
        for m in &svc.mounts {
            assert!(
                m.source.exists(),
                "{name}: {} (mounted at {}) exists once setup.sh ran",
                m.source.display(),
                m.target
            );
        }
        let s = compose.svc(name);
        if s["image"].as_str() != Some(tether_image) {
            continue;
        }
        // The image's ENTRYPOINT is the binary: a command is its arguments.
        assert!(!svc.command.is_empty(), "{name}: a command");
        assert_accepted(&svc.command, &format!("compose service {name}"));
        subcommands_seen.insert(svc.command[0].clone());
        let hc = &s["healthcheck"];
        if hc["disable"] != "true" {
            let test = strings(&hc["test"]);
            assert_eq!(test[..2], ["CMD", IMAGE_BIN], "{name}: the healthcheck runs the image's binary");
            assert_accepted(&test[2..], &format!("{name}'s healthcheck"));
        }
        // The config file it reads is mounted, and every path in it is mounted or a volume.
        let config = svc
            .env
            .iter()
            .find(|(k, _)| k == "TETHER_CONFIG")
            .map(|(_, v)| v.clone())
            .or_else(|| svc.args().windows(2).find(|w| w[0] == "--config").map(|w| w[1].clone()))
            .unwrap_or_else(|| panic!("{name}: no config (TETHER_CONFIG or --config)"));
        let m = svc
            .mounts
            .iter()
            .find(|m| m.host.display().to_string() == config)
            .unwrap_or_else(|| panic!("{name}: its config is not mounted"));
        let mapped = map_paths(&read(&m.source), &svc.mounts);
        for key in ["data_dir", "master_key_file", "cert_file", "key_file", "ca_file"] {
            if let Some(l) = mapped.lines().find(|l| l.starts_with(&format!("{key} ="))) {
                let v = l.split_once('=').unwrap().1.trim().trim_matches('"');
                assert!(
                    Path::new(v).exists(),
                    "{name}: {key} = {v}: not mounted (the file says {})",
                    get_key(&read(&m.source), key)
                );
            }
        }
        if let Some((_, pf)) = svc.env.iter().find(|(k, _)| k == "PGPASSFILE") {
            assert!(Path::new(pf).is_file(), "{name}: PGPASSFILE {pf} is a secret it has");
        }
    }
    assert!(["init", "serve", "gateway"].iter().all(|c| subcommands_seen.contains(*c)), "{subcommands_seen:?}");
    for c in compose.documented_commands() {
        assert_accepted(&c, "a compose.yaml comment");
    }
    for f in ["node.toml", "gateway.toml", "nginx.conf", "setup.sh"] {
        for c in tether_invocations(&read(&dir.join(f))) {
            assert_accepted(&c, f);
        }
    }
    // nginx reads its certificates from its mounted directory.
    let edge = compose.service("edge", work.path(), "edge");
    let conf = map_paths(&read(&dir.join("nginx.conf")), &edge.mounts);
    for l in conf.lines().map(str::trim).filter(|l| l.starts_with("ssl_certificate")) {
        let p = l.split_whitespace().nth(1).unwrap().trim_end_matches(';');
        assert!(Path::new(p).is_file(), "nginx.conf: {l}");
    }

    // The shipped files load (unknown keys would stop the processes), and so does the
    // gateway's documented introspection variant.
    tether_server::Settings::resolve(
        &tether_server::Overrides::default(),
        tether_server::FileConfig::load(&dir.join("node.toml")).expect("node.toml loads"),
    )
    .expect("node.toml resolves");
    tether_gateway::Config::load(&gw_toml_path).expect("gateway.toml loads");
    let variant = work.path().join("gateway-introspection.toml");
    write(&variant, &introspection_variant(&gw_toml, "gw", "secret-secret-secret"));
    let v = tether_gateway::Config::load(&variant).expect("the introspection variant loads");
    assert!(v.introspect_jwt_tokens, "the variant introspects JWTs, so revocations reach it");

    // One topology: the addresses in the table at the top of compose.yaml agree everywhere.
    let nginx = read(&dir.join("nginx.conf"));
    let edge_port = nginx
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen "))
        .and_then(|r| r.split_whitespace().next())
        .map(|p| p.parse::<u16>().expect("nginx listens on a port"))
        .expect("nginx.conf listen");
    let issuer = format!("https://localhost:{edge_port}");
    assert_eq!(get_key(&node_toml, "issuer"), issuer, "node.toml's issuer is nginx");
    assert_eq!(get_key(&gw_toml, "issuer"), issuer, "gateway.toml's issuer is nginx");
    let http_port = port_of(&get_key(&node_toml, "http_listen"));
    for n in ["node1", "node2"] {
        assert!(nginx.contains(&format!("server {n}:{http_port} ")), "nginx.conf forwards to {n}:{http_port}");
        let test = strings(&compose.svc(n)["healthcheck"]["test"]);
        assert!(
            test.iter().any(|a| a == &format!("http://127.0.0.1:{http_port}/healthz")),
            "{n}'s healthcheck: {test:?}"
        );
    }
    let gw_metrics = port_of(&get_key(&gw_toml, "metrics_listen"));
    let test = strings(&compose.svc("gateway")["healthcheck"]["test"]);
    assert!(
        test.iter().any(|a| a == &format!("http://127.0.0.1:{gw_metrics}/healthz")),
        "the gateway's healthcheck: {test:?}"
    );
    let published: Vec<String> = strings(&compose.svc("edge")["ports"]);
    for p in [edge_port, port_of(&get_key(&gw_toml, "listen")), gw_metrics] {
        assert!(
            published.iter().any(|x| x == &format!("127.0.0.1:{p}:{p}")),
            "edge publishes {p} on 127.0.0.1: {published:?}"
        );
    }
    assert_eq!(compose.svc("gateway")["network_mode"], "service:edge");
    let edge_ip = compose.svc("edge")["networks"]["tether"]["ipv4_address"].as_str().expect("edge's fixed address");
    assert!(node_toml.contains(&format!("\"{edge_ip}/32\"")), "node.toml trusts nginx's address {edge_ip}");
    let header = get_key(&node_toml, "client_cert_header");
    assert!(
        nginx.to_ascii_lowercase().contains(&format!("proxy_set_header {header} $ssl_client_escaped_cert;")),
        "nginx forwards the certificate in {header}"
    );
    let ignore = read(&dir.join(".gitignore"));
    for g in ["/secrets/", "/certs/"] {
        assert!(ignore.lines().any(|l| l == g), "deploy/compose/.gitignore keeps {g} out");
    }
    eprintln!("Dockerfile and compose.yaml checked: {:.1} s", t0.elapsed().as_secs_f64());
}
