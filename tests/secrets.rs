//! Security checks through the real binary: secrets never appear in output, logs, errors or
//! files; endpoints are validated URLs with plain http only on loopback; nothing turns TLS
//! verification off; the sandbox listens on loopback unless told otherwise, and says so.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use tempfile::TempDir;

/// The known secrets of the run: none of them may show anywhere.
const CLIENT_SECRET: &str = "csecret-7Qx2vLk9-wPz4";
const WRONG_SECRET: &str = "wrongsecret-Hj3mN8-rT5";
const ASSERTION: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmFjbWUifQ.assertsig-Zk81";
const TOKEN: &str = "bearertok-Vb6Yc1-Gf0";
const WRONG_TOKEN: &str = "badtoken-Qw9Er2-Ty4";
const TENANT: &str = "tenant-1";
const CLIENT_ID: &str = "app-1";

const ALL_SECRETS: [&str; 5] = [CLIENT_SECRET, WRONG_SECRET, ASSERTION, TOKEN, WRONG_TOKEN];

/// Every output of every run, with where it came from.
#[derive(Default)]
struct Evidence {
    texts: Vec<(String, String)>,
}

impl Evidence {
    fn add(&mut self, origin: impl Into<String>, text: impl Into<String>) {
        self.texts.push((origin.into(), text.into()));
    }

    /// Every file below `dir`, except `skip` (the federated token file holds the assertion
    /// by design).
    fn add_files(&mut self, dir: &Path, skip: &Path) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path == skip {
                continue;
            }
            if path.is_dir() {
                self.add_files(&path, skip);
            } else {
                let bytes = fs::read(&path).unwrap();
                self.add(
                    path.display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                );
            }
        }
    }

    fn assert_no_secret(&self) {
        let mut leaks = Vec::new();
        for (origin, text) in &self.texts {
            for secret in ALL_SECRETS {
                if text.contains(secret) {
                    leaks.push(format!("{origin} holds {secret}"));
                }
            }
            if let Some(token) = issued_token(text) {
                leaks.push(format!("{origin} holds an issued token {token}"));
            }
        }
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }
}

/// A token the sandbox issued: `sbx1.` and 48 hex digits.
fn issued_token(text: &str) -> Option<&str> {
    text.match_indices("sbx1.").find_map(|(at, _)| {
        let token = text.get(at..at + 5 + 48)?;
        token[5..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then_some(token)
    })
}

/// One command of the secrets run: name, folder, arguments, environment, expected exit code.
type Case<'a> = (
    &'a str,
    &'a Path,
    Vec<&'a str>,
    &'a [(&'a str, &'a str)],
    i32,
);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The sandbox as a child process; stopped with Ctrl-C (SIGINT) so that it saves its state.
struct Sandbox {
    child: Child,
    url: String,
    stderr: JoinHandle<String>,
}

impl Sandbox {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Sandbox {
        let mut command = Command::new(env!("CARGO_BIN_EXE_incidentops"));
        command
            .args(["--verbose", "sandbox"])
            .args(args)
            .env_clear()
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Sandbox {
            child,
            url: line.trim().to_string(),
            stderr,
        }
    }

    /// Ctrl-C, then everything it wrote on stderr.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        let stderr = self.stderr.join().unwrap();
        assert!(exit.success(), "sandbox: {exit:?}\n{stderr}");
        stderr
    }
}

fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_incidentops"));
    command
        .current_dir(cwd)
        .arg("--verbose")
        .args(args)
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Desired state for two of Microsoft's documented incidents: changes that need a PATCH each.
fn desired_repo() -> TempDir {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("incidents")).unwrap();
    fs::write(
        dir.path().join("incidents/924565.yaml"),
        "id: 924565\nstatus: Resolved\nclassification: TruePositive\ndetermination: Malware\ncomments:\n  - checked by the secrets test\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("incidents/924521.yaml"),
        "id: 924521\ntags: [secrets-test]\n",
    )
    .unwrap();
    dir
}

fn with<'a>(
    common: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    common.iter().chain(extra).copied().collect()
}

fn fixture_data(dir: &Path) -> PathBuf {
    let data = dir.join("state.json");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/incidents-list.json"),
        &data,
    )
    .unwrap();
    data
}

#[cfg(unix)]
#[test]
fn no_command_leaks_a_secret_token_or_assertion_in_output_logs_or_files() {
    let work = TempDir::new().unwrap();
    let data = fixture_data(work.path());
    let request_log = work.path().join("requests.jsonl");
    let token_file = work.path().join("federated.jwt");
    fs::write(&token_file, ASSERTION).unwrap();
    let sandbox = Sandbox::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--persist",
            "--data",
            data.to_str().unwrap(),
            "--request-log",
            request_log.to_str().unwrap(),
        ],
        &[
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
            ("INCIDENTOPS_TOKEN", TOKEN),
        ],
    );
    assert!(
        sandbox.url.starts_with("http://127.0.0.1:"),
        "{}",
        sandbox.url
    );
    let url = sandbox.url.clone();
    let repo = desired_repo();
    let imported = TempDir::new().unwrap();
    fs::create_dir(imported.path().join("incidents")).unwrap();
    let plan_file = work.path().join("plan.json");
    let plan_file = plan_file.to_str().unwrap();
    let token_file_env = token_file.to_str().unwrap();

    let common = [
        ("INCIDENTOPS_API_URL", url.as_str()),
        ("AZURE_AUTHORITY_HOST", url.as_str()),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT_ID),
    ];
    let secret = with(&common, &[("AZURE_CLIENT_SECRET", CLIENT_SECRET)]);
    let federated = with(&common, &[("AZURE_FEDERATED_TOKEN_FILE", token_file_env)]);
    let token = with(&common, &[("INCIDENTOPS_TOKEN", TOKEN)]);
    let wrong_secret = with(&common, &[("AZURE_CLIENT_SECRET", WRONG_SECRET)]);
    let wrong_token = with(&common, &[("INCIDENTOPS_TOKEN", WRONG_TOKEN)]);
    let every_secret = with(
        &common,
        &[
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
            ("INCIDENTOPS_TOKEN", TOKEN),
        ],
    );

    let r = repo.path();
    let i = imported.path();
    // (name, folder, arguments, environment, expected exit code)
    let cases: Vec<Case> = vec![
        ("validate", r, vec!["validate"], &every_secret, 0),
        ("schema", r, vec!["schema"], &every_secret, 0),
        (
            "plan with a client secret",
            r,
            vec!["plan", "--out", plan_file],
            &secret,
            0,
        ),
        (
            "plan with a federated assertion",
            r,
            vec!["plan", "--format", "json"],
            &federated,
            0,
        ),
        (
            "plan with a token",
            r,
            vec!["plan", "--format", "markdown"],
            &token,
            0,
        ),
        (
            "plan with a wrong secret",
            r,
            vec!["plan"],
            &wrong_secret,
            1,
        ),
        (
            "plan with a rejected token (401)",
            r,
            vec!["plan"],
            &wrong_token,
            1,
        ),
        (
            "apply with a wrong secret",
            r,
            vec!["apply", plan_file],
            &wrong_secret,
            1,
        ),
        (
            "apply the saved plan",
            r,
            vec!["apply", plan_file],
            &secret,
            0,
        ),
        (
            "apply again: nothing left",
            r,
            vec!["apply", "--auto-approve"],
            &federated,
            0,
        ),
        (
            "import with a federated assertion",
            i,
            vec!["import", "--id", "924565", "--id", "924521"],
            &federated,
            0,
        ),
        (
            "import with a rejected token (401)",
            i,
            vec!["import", "--id", "924518"],
            &wrong_token,
            1,
        ),
        (
            "plan refused over plain http",
            r,
            vec!["plan", "--api-url", "http://api.example.com"],
            &secret,
            1,
        ),
        (
            "plan --sandbox",
            r,
            vec!["plan", "--sandbox"],
            &every_secret,
            0,
        ),
        (
            "apply --sandbox",
            r,
            vec!["apply", "--sandbox", "--auto-approve"],
            &every_secret,
            0,
        ),
    ];

    let mut evidence = Evidence::default();
    let mut traced = 0;
    for (name, cwd, args, env, expected) in &cases {
        let result = run(cwd, args, env);
        assert_eq!(
            result.code,
            Some(*expected),
            "{name}\nstdout:\n{}\nstderr:\n{}",
            result.stdout,
            result.stderr
        );
        if result.stderr.contains("TRACE") || result.stderr.contains("DEBUG") {
            traced += 1;
        }
        evidence.add(format!("{name}: stdout"), result.stdout);
        evidence.add(format!("{name}: stderr"), result.stderr);
    }
    let sandbox_stderr = sandbox.stop();
    evidence.add("sandbox stderr", sandbox_stderr);
    evidence.add_files(work.path(), &token_file);
    evidence.add_files(repo.path(), &token_file);
    evidence.add_files(imported.path(), &token_file);

    // The run did what it claims: tracing was on, and every kind of file was written.
    assert!(
        traced >= cases.len() / 2,
        "RUST_LOG=trace logged in only {traced} runs"
    );
    let log = fs::read_to_string(&request_log).unwrap();
    assert!(log.lines().count() >= 10, "{log}");
    assert!(log.contains("oauth2/v2.0/token"), "{log}");
    assert!(
        fs::read_to_string(plan_file)
            .unwrap()
            .contains("\"formatVersion\"")
    );
    assert!(imported.path().join("incidents/924565.yaml").exists());
    assert!(repo.path().join(".incidentops/sandbox.json").exists());
    assert!(
        fs::read_to_string(&data)
            .unwrap()
            .contains("checked by the secrets test")
    );

    evidence.assert_no_secret();
}

#[test]
fn issued_token_detection_finds_sandbox_tokens_only() {
    let token = format!("sbx1.{}", "0123456789abcdef".repeat(3));
    assert_eq!(
        issued_token(&format!("Bearer {token}\n")),
        Some(token.as_str())
    );
    assert_eq!(issued_token("sbx1.not-a-token"), None);
}

#[test]
fn plain_http_is_refused_for_remote_hosts_and_accepted_on_loopback() {
    let repo = desired_repo();
    let env = [("INCIDENTOPS_TOKEN", TOKEN)];
    for url in ["http://api.security.microsoft.com", "http://10.0.0.1:8080"] {
        let refused = run(repo.path(), &["plan", "--api-url", url], &env);
        assert_eq!(refused.code, Some(1), "{url}");
        assert!(
            refused.stderr.contains("plain http"),
            "{url}: {}",
            refused.stderr
        );
    }
    let authority = [
        ("AZURE_AUTHORITY_HOST", "http://login.example.com"),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
    ];
    let refused = run(repo.path(), &["plan"], &authority);
    assert_eq!(refused.code, Some(1));
    assert!(refused.stderr.contains("plain http"), "{}", refused.stderr);
    assert!(!refused.stderr.contains(CLIENT_SECRET));

    // Loopback is allowed: the run gets as far as connecting (and fails, nothing listens).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let loopback = run(repo.path(), &["plan", "--api-url", &closed], &env);
    assert!(
        !loopback.stderr.contains("plain http"),
        "{}",
        loopback.stderr
    );
}

#[test]
fn the_api_url_and_the_token_endpoint_must_be_valid_urls() {
    let repo = desired_repo();
    let env = [("INCIDENTOPS_TOKEN", TOKEN)];
    for url in [
        "not a url",
        "ftp://api.example.com",
        "https://",
        "https://user:pw@x.com",
    ] {
        let refused = run(repo.path(), &["plan", "--api-url", url], &env);
        assert_eq!(refused.code, Some(1), "{url}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("API URL"),
            "{url}: {}",
            refused.stderr
        );
        assert!(!refused.stderr.contains("pw@"), "{url}: {}", refused.stderr);
    }
    for host in ["login microsoft", "file:///etc/passwd"] {
        let env = [
            ("AZURE_AUTHORITY_HOST", host),
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
        ];
        let refused = run(repo.path(), &["plan"], &env);
        assert_eq!(refused.code, Some(1), "{host}: {}", refused.stderr);
        assert!(refused.stderr.contains(host), "{host}: {}", refused.stderr);
    }
}

#[test]
fn no_option_or_code_path_turns_tls_verification_off() {
    // No flag or environment variable of any command mentions it...
    for command in ["validate", "plan", "apply", "import", "schema", "sandbox"] {
        let help = run(Path::new("."), &[command, "--help"], &[]);
        assert_eq!(help.code, Some(0), "{command}");
        let text = help.stdout.to_lowercase();
        for word in ["insecure", "verify", "certificate", "tls", "ssl"] {
            assert!(
                !text.contains(word),
                "`{command} --help` mentions {word}:\n{text}"
            );
        }
    }
    // ...and no code can: reqwest's switches for it appear nowhere in the sources.
    let mut offenders = Vec::new();
    scan(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut offenders,
    );
    assert!(offenders.is_empty(), "{offenders:?}");

    fn scan(dir: &Path, offenders: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(&path, offenders);
            } else {
                let text = fs::read_to_string(&path).unwrap();
                for switch in [
                    "danger_accept_invalid_certs",
                    "danger_accept_invalid_hostnames",
                    "tls_built_in_root_certs(false)",
                    "dangerous()",
                ] {
                    if text.contains(switch) {
                        offenders.push(format!("{}: {switch}", path.display()));
                    }
                }
            }
        }
    }
}

#[cfg(unix)]
#[test]
fn the_sandbox_listens_on_loopback_by_default_and_warns_when_it_does_not() {
    let by_default = Sandbox::start(&[], &[("INCIDENTOPS_TOKEN", TOKEN)]);
    assert!(
        by_default.url.starts_with("http://127.0.0.1:"),
        "{}",
        by_default.url
    );
    let stderr = by_default.stop();
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(
        stderr.contains(&"serving the Defender incidents API at http://127.0.0.1:".to_string()),
        "{stderr}"
    );

    let everywhere = Sandbox::start(&["--listen", "0.0.0.0:0"], &[("INCIDENTOPS_TOKEN", TOKEN)]);
    let stderr = everywhere.stop();
    assert!(
        stderr.contains("which other machines can reach"),
        "{stderr}"
    );
}
