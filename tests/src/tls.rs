//! TLS fixtures: a CA the test makes (openssl), TLS endpoints in front of plain
//! servers (stunnel4), and a second broker that demands SASL. All from Debian's
//! packages and the local broker build, on loopback.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A certificate authority of the test's own, and the certificates it issues.
pub struct TestCa {
    pub dir: PathBuf,
    pub name: String,
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl (Debian package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA named `name` (its files under `dir`).
    pub fn new(dir: &Path, name: &str) -> Self {
        let cert = dir.join(format!("{name}-ca.crt"));
        let key = dir.join(format!("{name}-ca.key"));
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=weir test CA {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
            dir,
        );
        Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert,
            key,
        }
    }

    /// A certificate for `cn`, valid for `localhost` and `127.0.0.1` as a server and
    /// usable as a client certificate. `file` names its files (`file.crt`, `file.key`).
    pub fn issue(&self, cn: &str, file: &str) -> Issued {
        let cert = self.dir.join(format!("{file}.crt"));
        let key = self.dir.join(format!("{file}.key"));
        let csr = self.dir.join(format!("{file}.csr"));
        let ext = self.dir.join(format!("{file}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
            ],
            &self.dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                self.cert.to_str().unwrap(),
                "-CAkey",
                self.key.to_str().unwrap(),
                "-CAcreateserial",
                "-extfile",
                ext.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
            &self.dir,
        );
        Issued { cert, key }
    }
}

/// `stunnel4`: TLS on `127.0.0.1:accept`, plain TCP to `connect`. Killed when dropped.
pub struct Stunnel {
    child: Child,
    pub port: u16,
}

impl Stunnel {
    pub fn start(dir: &Path, name: &str, server: &Issued, connect: &str) -> Self {
        Self::start_on(dir, name, crate::free_port(), server, connect)
    }

    pub fn start_on(dir: &Path, name: &str, port: u16, server: &Issued, connect: &str) -> Self {
        Self::spawn(dir, name, port, server, connect, None)
    }

    /// One that refuses clients without a certificate of `client_ca`.
    pub fn start_verifying(
        dir: &Path,
        name: &str,
        server: &Issued,
        connect: &str,
        client_ca: &Path,
    ) -> Self {
        Self::spawn(
            dir,
            name,
            crate::free_port(),
            server,
            connect,
            Some(client_ca),
        )
    }

    fn spawn(
        dir: &Path,
        name: &str,
        port: u16,
        server: &Issued,
        connect: &str,
        client_ca: Option<&Path>,
    ) -> Self {
        let conf = dir.join(format!("stunnel-{name}.conf"));
        let verify = client_ca
            .map(|ca| {
                format!(
                    "verifyChain = yes\nrequireCert = yes\nCAfile = {}\n",
                    ca.display()
                )
            })
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\ndebug = warning\n[{name}]\naccept = 127.0.0.1:{port}\nconnect = {connect}\ncert = {}\nkey = {}\n{verify}",
                server.cert.display(),
                server.key.display()
            ),
        )
        .unwrap();
        let child = Command::new("stunnel4")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stunnel4 (Debian package; scripts/stack.sh install)");
        wait_port(port, Duration::from_secs(10), "stunnel4");
        Self { child, port }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_port(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The local broker build (scripts/stack.sh install), as `TANSU_BIN` names it.
pub fn tansu_bin() -> PathBuf {
    let p = std::env::var("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::cache_dir().join("tansu-broker-0.6.0-r2/bin/tansu"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/stack.sh install",
        p.display()
    );
    p
}

/// A broker of the test's own that makes every client authenticate with SASL SCRAM
/// (the only mechanism tansu 0.6 is built with, beside OAUTHBEARER), with a TLS endpoint
/// in front of it: clients reach it as `localhost:<tls_port>` (what it advertises) with
/// SASL_SSL. Its plain port answers only SASL.
pub struct SaslBroker {
    child: Child,
    pub plain_port: u16,
    pub tls: Stunnel,
    dir: tempfile::TempDir,
}

fn spawn_tansu(dir: &Path, plain_port: u16, advertised_port: u16, authentication: bool) -> Child {
    let child = Command::new(tansu_bin())
        .current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{plain_port}"),
            "--advertised-listener-url",
            &format!("tcp://localhost:{advertised_port}"),
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .args(authentication.then_some("--authentication"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the local broker build");
    wait_port(plain_port, Duration::from_secs(30), "the test broker");
    child
}

impl SaslBroker {
    /// `users`: SCRAM-SHA-256 credentials. They are stored first with the broker open
    /// (AlterUserScramCredentials needs an authenticated client once SASL is on, and
    /// there is no user yet), then it restarts on the same storage demanding SASL.
    pub fn start(server: &Issued, users: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plain_port = crate::free_port();
        // The TLS port must be known before the broker starts: it is what it advertises.
        let tls_port = crate::free_port();
        let mut open = spawn_tansu(dir.path(), plain_port, plain_port, false);
        let upserts = users
            .iter()
            .map(|(u, p)| format!("UserScramCredentialUpsertion('{u}', ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b'{p}')"))
            .collect::<Vec<_>>()
            .join(", ");
        let script = format!(
            "from confluent_kafka.admin import AdminClient, UserScramCredentialUpsertion, ScramCredentialInfo, ScramMechanism
a = AdminClient({{'bootstrap.servers': 'localhost:{plain_port}'}})
for f in a.alter_user_scram_credentials([{upserts}], request_timeout=20).values():
    f.result()
print('ok')
"
        );
        let out = Command::new(crate::python())
            .args(["-c", &script])
            .output()
            .expect("run python");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
            "storing SCRAM credentials failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = open.kill();
        let _ = open.wait();
        let child = spawn_tansu(dir.path(), plain_port, tls_port, true);
        let tls = Stunnel::start_on(
            dir.path(),
            "kafka",
            tls_port,
            server,
            &format!("127.0.0.1:{plain_port}"),
        );
        Self {
            child,
            plain_port,
            tls,
            dir,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("localhost:{}", self.tls.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
