//! Foreign TLS peers: real OpenSSL `s_client` and `s_server`, and certificates made with the
//! `openssl` CLI, so our channel is tested against an implementation that is not ours.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{Proc, require_tool, wait_for};

fn run(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate and key as PEM files.
pub struct Pem {
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Extra chain certificates (the CA) to send, if any.
    pub chain: Option<PathBuf>,
}

/// A self-signed P-256 leaf with EKU serverAuth+clientAuth.
pub fn self_signed(dir: &Path, name: &str) -> Pem {
    require_tool("openssl");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]);
    Pem {
        cert,
        key,
        chain: None,
    }
}

/// A CA and a leaf it issued: a perfectly valid chain, just not one anybody pinned.
pub fn ca_and_leaf(dir: &Path, name: &str) -> Pem {
    require_tool("openssl");
    let p = |ext: &str| dir.join(format!("{name}.{ext}"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p("ca.key").to_str().unwrap(),
        "-out",
        p("ca.crt").to_str().unwrap(),
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} CA"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,digitalSignature",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p("key").to_str().unwrap(),
        "-out",
        p("csr").to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
    ]);
    std::fs::write(
        p("ext"),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{name}\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        p("csr").to_str().unwrap(),
        "-CA",
        p("ca.crt").to_str().unwrap(),
        "-CAkey",
        p("ca.key").to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        p("ext").to_str().unwrap(),
        "-out",
        p("crt").to_str().unwrap(),
    ]);
    Pem {
        cert: p("crt"),
        key: p("key"),
        chain: Some(p("ca.crt")),
    }
}

/// PEM files (in `dir`) for the identity of `bmc`, a test BMC with file keys: OpenSSL can
/// then speak as that BMC.
pub fn bmc_identity(bmc: &crate::Bmc, dir: &Path) -> Pem {
    from_der(
        dir,
        &format!("{}-real", bmc.name),
        &bmc.cert_dir().join("identity.der"),
        &bmc.cert_dir().join("ca.der"),
        &bmc.state_dir().join("keys/identity.p8"),
    )
}

/// PEM files for an identity whose DER certificates and PKCS#8 DER key are on disk (the
/// file key backend's layout): used as a positive control that the test can succeed.
pub fn from_der(dir: &Path, name: &str, leaf_der: &Path, ca_der: &Path, key_p8: &Path) -> Pem {
    let p = |ext: &str| dir.join(format!("{name}.{ext}"));
    run(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        leaf_der.to_str().unwrap(),
        "-out",
        p("crt").to_str().unwrap(),
    ]);
    run(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        ca_der.to_str().unwrap(),
        "-out",
        p("ca.crt").to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        key_p8.to_str().unwrap(),
        "-out",
        p("key").to_str().unwrap(),
    ]);
    Pem {
        cert: p("crt"),
        key: p("key"),
        chain: Some(p("ca.crt")),
    }
}

/// Runs `openssl s_client` against `host`:`port` with `pem` as client certificate (or
/// none), writes `send` after the handshake, and returns everything it printed. It gives up
/// after `limit` (`timeout` kills it).
pub fn s_client(
    host: std::net::IpAddr,
    port: u16,
    pem: Option<&Pem>,
    extra: &[&str],
    send: &[u8],
    limit: Duration,
) -> Output {
    let mut args = vec!["-quiet", "-no_ign_eof"];
    args.extend_from_slice(extra);
    run_s_client(host, port, pem, &args, send, limit)
}

/// [`s_client`] with TLS session resumption: resumes the session saved in `sess_in` (if
/// given) and saves the session it ends with (its ticket) to `sess_out`. Not quiet, so
/// [`resumed`] can read s_client's summary; `-nocommands` keeps the bytes sent from being
/// taken as s_client commands.
pub fn s_client_session(
    host: std::net::IpAddr,
    port: u16,
    pem: Option<&Pem>,
    sess_in: Option<&std::path::Path>,
    sess_out: &std::path::Path,
    send: &[u8],
    limit: Duration,
) -> Output {
    let mut args = vec![
        "-nocommands",
        "-no_ign_eof",
        "-sess_out",
        sess_out.to_str().unwrap(),
    ];
    if let Some(input) = sess_in {
        args.extend(["-sess_in", input.to_str().unwrap()]);
    }
    run_s_client(host, port, pem, &args, send, limit)
}

/// True if the [`s_client_session`] that printed `out` resumed its session (TLS 1.3).
pub fn resumed(out: &Output) -> bool {
    contains(&out.stdout, b"Reused, TLSv1.3")
}

fn run_s_client(
    host: std::net::IpAddr,
    port: u16,
    pem: Option<&Pem>,
    args: &[&str],
    send: &[u8],
    limit: Duration,
) -> Output {
    require_tool("openssl");
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{}", limit.as_secs().max(1)))
        .arg("openssl")
        .args([
            "s_client",
            "-connect",
            &std::net::SocketAddr::new(host, port).to_string(),
        ])
        .args(args);
    if let Some(pem) = pem {
        cmd.args([
            "-cert",
            pem.cert.to_str().unwrap(),
            "-key",
            pem.key.to_str().unwrap(),
        ]);
        if let Some(chain) = &pem.chain {
            cmd.args(["-cert_chain", chain.to_str().unwrap()]);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start s_client");
    {
        let mut stdin = child.stdin.take().unwrap();
        // Give the handshake a moment so the bytes go out as application data.
        std::thread::sleep(Duration::from_millis(300));
        let _ = stdin.write_all(send);
        let _ = stdin.flush();
        // Keep stdin open briefly so s_client reads the answer before it sees EOF.
        std::thread::sleep(Duration::from_millis(700));
    }
    child.wait_with_output().expect("s_client output")
}

/// True if `haystack` contains `needle` as a contiguous byte sequence.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `openssl s_server` on `host`:`port` presenting `pem`, TLS 1.3, asking for a client
/// certificate; killed by PID on drop.
pub fn s_server(host: std::net::IpAddr, port: u16, pem: &Pem) -> Proc {
    require_tool("openssl");
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &std::net::SocketAddr::new(host, port).to_string(),
            "-tls1_3",
            "-verify",
            "1",
        ])
        .args([
            "-cert",
            pem.cert.to_str().unwrap(),
            "-key",
            pem.key.to_str().unwrap(),
        ])
        .args(
            pem.chain
                .iter()
                .flat_map(|c| ["-cert_chain".to_owned(), c.display().to_string()]),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start s_server");
    let proc = Proc {
        child,
        name: "openssl s_server".into(),
    };
    wait_for(Duration::from_secs(10), "s_server to listen", || {
        std::net::TcpStream::connect((host, port)).ok().map(|_| ())
    });
    proc
}
