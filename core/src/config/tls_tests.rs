//! Loader tests for TLS: `https://` backends with `ca_file` and `tls_server_name`, mocks with
//! `tls_cert` and `tls_key`. Files are written to a scratch directory per test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::tests::{fails, parse};
use super::*;

/// A self-signed certificate for `localhost`/127.0.0.1 (public material only; parsing it needs
/// no key, and no signature is checked at load time).
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIUSYMzqk79lDUtPeVS5AfhnF0tVyQwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJYWlndyB0ZXN0MCAXDTI2MTEyNzA2MjQwM1oYDzIxMjYxMTAz
MDYyNDAzWjAUMRIwEAYDVQQDDAlhaWd3IHRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAT7C5qrh0+XntoYZqXZJ+gsV4lccdx3rqhKZ220lM7t4Sp7PpeAEafG
T7WxH8AY573dsTFPRnR9ZXG4lcxQCZWSo28wbTAdBgNVHQ4EFgQU/8pi459DomWe
UURoW29WFf7zptkwHwYDVR0jBBgwFoAU/8pi459DomWeUURoW29WFf7zptkwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSQAwRgIhAOU4UWXog/DtZ8CIRUbygH1bmXYmU68oeVLwiJwqmvu2AiEA
rR3NN/EevP9o16VA/QlFnT64hndj1dePLzKkmzwYMS0=
-----END CERTIFICATE-----
";

/// Shaped like a PKCS#8 key: the loader only checks the PEM framing (the IO side builds the
/// real server config and checks the key against the certificate).
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("aigw-core-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    /// Write `text` to `name` and return its path as a string for the config.
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn missing(&self) -> String {
        self.0.join("missing.pem").display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One backend `a` with `url` and extra `keys` (line 3 on), in a pool.
fn with_backend(url: &str, keys: &str) -> String {
    format!("[backends.a]\nurl = \"{url}\"\n{keys}[pools.p]\nmembers = [{{ backend = \"a\" }}]\n")
}

#[test]
fn https_backend_defaults_to_the_url_host_and_web_pki_roots() {
    let c = parse(&with_backend("https://127.0.0.1:8443/base", "")).unwrap();
    let b = &c.backends[0];
    assert!(b.tls);
    assert_eq!((b.port, b.authority.as_str()), (8443, "127.0.0.1:8443"));
    let t = b.tls_options.as_ref().unwrap();
    assert_eq!(
        t,
        &BackendTls {
            server_name: "127.0.0.1".into(),
            ca_file: None,
            extra_roots: vec![]
        }
    );
    let c = parse(&with_backend("https://[::1]", "")).unwrap();
    let b = &c.backends[0];
    assert_eq!(
        (b.port, b.tls_options.as_ref().unwrap().server_name.as_str()),
        (443, "::1")
    );
    // Plain http has no TLS settings.
    let c = parse(&with_backend("http://127.0.0.1:1", "")).unwrap();
    assert!(!c.backends[0].tls && c.backends[0].tls_options.is_none());
}

#[test]
fn server_name_override_and_ca_file() {
    let dir = Scratch::new();
    let ca = dir.file(
        "ca.pem",
        &format!("# comment lines are fine\n{CERT_PEM}{CERT_PEM}"),
    );
    let keys = format!("tls_server_name = \" api.example.com \"\nca_file = '{ca}'\n");
    let c = parse(&with_backend("https://127.0.0.1:1", &keys)).unwrap();
    let t = c.backends[0].tls_options.as_ref().unwrap();
    assert_eq!(t.server_name, "api.example.com");
    assert_eq!(t.ca_file.as_deref(), Some(Path::new(&ca)));
    assert_eq!(t.extra_roots.len(), 2);
    assert_eq!(t.extra_roots[0], t.extra_roots[1]);
}

#[test]
fn ca_file_errors_name_the_file_line_and_key() {
    let dir = Scratch::new();
    let ca = |path: &str| with_backend("https://127.0.0.1:1", &format!("ca_file = '{path}'\n"));
    let key = "backends.a.ca_file";
    fails(&ca(&dir.missing()), 3, key, "cannot read");
    fails(&ca(&dir.missing()), 3, key, "missing.pem");
    fails(
        &ca(&dir.file("key.pem", KEY_PEM)),
        3,
        key,
        "holds no PEM certificate",
    );
    fails(
        &ca(&dir.file("empty.pem", "")),
        3,
        key,
        "holds no PEM certificate",
    );
    let bad64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    fails(
        &ca(&dir.file("bad64.pem", bad64)),
        3,
        key,
        "is not valid PEM",
    );
    let open = "-----BEGIN CERTIFICATE-----\nAAAA\n";
    fails(&ca(&dir.file("open.pem", open)), 3, key, "is not valid PEM");
    let junk = format!("{CERT_PEM}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    fails(
        &ca(&dir.file("junk.pem", &junk)),
        3,
        key,
        "certificate #2 in",
    );
    fails(&ca(" "), 3, key, "must not be empty");
    // A directory is not a file.
    fails(&ca(&dir.0.display().to_string()), 3, key, "cannot read");
}

#[test]
fn tls_keys_are_checked() {
    let dir = Scratch::new();
    let ca = dir.file("ca.pem", CERT_PEM);
    fails(
        &with_backend("http://127.0.0.1:1", &format!("ca_file = '{ca}'\n")),
        3,
        "backends.a.ca_file",
        "only applies to https:// backends",
    );
    fails(
        &with_backend("http://127.0.0.1:1", "tls_server_name = \"x\"\n"),
        3,
        "backends.a.tls_server_name",
        "only applies to https:// backends",
    );
    fails(
        &with_backend("https://127.0.0.1:1", "tls_server_name = \"\"\n"),
        3,
        "backends.a.tls_server_name",
        "must not be empty",
    );
    fails(
        &with_backend("https://127.0.0.1:1", "tls_server_name = \"not a name!\"\n"),
        3,
        "backends.a.tls_server_name",
        "not a valid TLS server name",
    );
    fails(
        &with_backend("https://127.0.0.1:1", "ca_file = 7\n"),
        3,
        "backends.a.ca_file",
        "invalid type",
    );
    fails(
        &with_backend("https://127.0.0.1:1", "ca_files = \"x\"\n"),
        3,
        "backends.a.ca_files",
        "unknown key",
    );
}

#[test]
fn mock_tls_cert_and_key() {
    let dir = Scratch::new();
    let cert = dir.file("cert.pem", CERT_PEM);
    let key = dir.file("key.pem", KEY_PEM);
    let mock = |keys: &str| {
        format!(
            "{}[mocks.m]\nlisten = \"127.0.0.1:0\"\n{keys}",
            with_backend("http://127.0.0.1:1", "")
        )
    };
    let c = parse(&mock(&format!("tls_cert = '{cert}'\ntls_key = '{key}'\n"))).unwrap();
    let t = c.mocks[0].tls.as_ref().unwrap();
    assert_eq!(
        (t.cert_file.as_path(), t.key_file.as_path()),
        (Path::new(&cert), Path::new(&key))
    );
    assert_eq!(t.cert_chain.len(), 1);
    assert!(matches!(*t.key, PrivateKeyDer::Pkcs8(_)));
    assert!(
        !format!("{t:?}").contains("AAAA"),
        "Debug must not print the key"
    );
    assert!(parse(&mock("")).unwrap().mocks[0].tls.is_none());

    fails(
        &mock(&format!("tls_cert = '{cert}'\n")),
        7,
        "mocks.m.tls_cert",
        "needs tls_key",
    );
    fails(
        &mock(&format!("tls_key = '{key}'\n")),
        7,
        "mocks.m.tls_key",
        "needs tls_cert",
    );
    let missing = dir.missing();
    fails(
        &mock(&format!("tls_cert = '{missing}'\ntls_key = '{key}'\n")),
        7,
        "mocks.m.tls_cert",
        "cannot read",
    );
    fails(
        &mock(&format!("tls_cert = '{key}'\ntls_key = '{key}'\n")),
        7,
        "mocks.m.tls_cert",
        "holds no PEM certificate",
    );
    fails(
        &mock(&format!("tls_cert = '{cert}'\ntls_key = '{cert}'\n")),
        8,
        "mocks.m.tls_key",
        "holds no PEM private key",
    );
    fails(
        &mock(&format!("tls_cert = '{cert}'\ntls_key = '{missing}'\n")),
        8,
        "mocks.m.tls_key",
        "cannot read",
    );
    let junk = dir.file(
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    fails(
        &mock(&format!("tls_cert = '{junk}'\ntls_key = '{key}'\n")),
        7,
        "mocks.m.tls_cert",
        "does not parse",
    );
}

#[test]
fn mock_tls_load_for_the_command_line() {
    let dir = Scratch::new();
    let cert = dir.file("cert.pem", CERT_PEM);
    let key = dir.file("key.pem", KEY_PEM);
    let t = MockTls::load(Path::new(&cert), Path::new(&key)).unwrap();
    assert_eq!(t.cert_chain.len(), 1);
    let e = MockTls::load(Path::new(&cert), Path::new(&dir.missing())).unwrap_err();
    assert!(
        e.contains("cannot read") && e.contains("missing.pem"),
        "{e}"
    );
}
