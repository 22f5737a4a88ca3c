//! TLS with rustls (ring provider) over monoio, through monoio-rustls in its safe IO mode: its
//! reads and writes go through buffers it owns, so dropping one mid-flight (every timeout does)
//! is sound.
//!
//! Client configs for `https://` backends are built once per distinct set of extra roots and
//! shared by every worker and every config generation that uses the same `ca_file`: not per
//! connection, and one session cache, so reconnects resume TLS sessions. The mock's server
//! config is built once at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aigw_core::config::{CertificateDer, Config, MockTls};
use monoio_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol offered and accepted: aigw speaks HTTP/1.1 only.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How a worker reaches one backend.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP (`http://`).
    Plain,
    /// TCP, then a TLS handshake verified against `server_name` (`https://`).
    Tls {
        /// The shared client config.
        connector: TlsConnector,
        /// Sent as SNI and matched against the certificate.
        server_name: ServerName<'static>,
    },
    /// TLS was asked for but its settings could not be built; every connect fails with this.
    Unusable(String),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Plain => f.write_str("Plain"),
            Transport::Tls { server_name, .. } => write!(f, "Tls({})", server_name.to_str()),
            Transport::Unusable(e) => write!(f, "Unusable({e})"),
        }
    }
}

/// Client configs by extra roots, shared by all workers.
#[derive(Default)]
pub struct TlsClients {
    configs: Mutex<HashMap<Vec<CertificateDer<'static>>, Arc<ClientConfig>>>,
}

impl TlsClients {
    /// The transport of every backend of `cfg`, by backend id. Configs no backend of `cfg` uses
    /// any more are forgotten (connections and snapshots still holding one keep it alive).
    pub fn transports(&self, cfg: &Config) -> Vec<Transport> {
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        configs.retain(|roots, _| {
            cfg.backends.iter().any(|b| {
                b.tls_options
                    .as_ref()
                    .is_some_and(|t| &t.extra_roots == roots)
            })
        });
        cfg.backends
            .iter()
            .map(|b| {
                let Some(t) = b.tls_options.as_ref().filter(|_| b.tls) else { return Transport::Plain };
                let server_name = match ServerName::try_from(t.server_name.clone()) {
                    Ok(n) => n,
                    Err(e) => return Transport::Unusable(format!("invalid TLS server name {:?}: {e}", t.server_name)),
                };
                let config = match configs.get(&t.extra_roots) {
                    Some(c) => c.clone(),
                    None => match client_config(&t.extra_roots) {
                        Ok(c) => {
                            let c = Arc::new(c);
                            configs.insert(t.extra_roots.clone(), c.clone());
                            c
                        }
                        Err(e) => {
                            tracing::error!(backend = %b.name, "cannot build its TLS client config: {e}");
                            return Transport::Unusable(format!("TLS client config: {e}"));
                        }
                    },
                };
                Transport::Tls { connector: TlsConnector::from(config), server_name }
            })
            .collect()
    }
}

/// A client config trusting the web PKI roots plus `extra`, offering HTTP/1.1 by ALPN.
///
/// # Errors
/// A root that is not a usable trust anchor.
pub fn client_config(extra: &[CertificateDer<'static>]) -> Result<ClientConfig, rustls::Error> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots.add(cert.clone())?;
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// The acceptor of a mock serving HTTPS.
///
/// # Errors
/// The key does not match the certificate or is of an unsupported kind; the message names both files.
pub fn mock_acceptor(t: &MockTls) -> Result<TlsAcceptor, String> {
    let why = |e: rustls::Error| {
        format!(
            "cannot use tls_cert {} with tls_key {}: {e}",
            t.cert_file.display(),
            t.key_file.display()
        )
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(why)?
            .with_no_client_auth()
            .with_single_cert(t.cert_chain.clone(), t.key.clone_key())
            .map_err(why)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(TlsAcceptor::from(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[backends.a]
url = "https://127.0.0.1:1"
[backends.b]
url = "https://[::1]:2/base"
tls_server_name = "b.example"
[backends.c]
url = "http://127.0.0.1:3"
[pools.p]
members = [{ backend = "a" }, { backend = "b" }, { backend = "c" }]
[models]
"*" = "p"
"#;

    #[test]
    fn one_client_config_per_set_of_roots_shared_across_generations() {
        let clients = TlsClients::default();
        let cfg = aigw_core::config::parse_str(CFG, None).unwrap();
        let t = clients.transports(&cfg);
        assert!(
            matches!(&t[0], Transport::Tls { server_name, .. } if server_name.to_str() == "127.0.0.1")
        );
        assert!(
            matches!(&t[1], Transport::Tls { server_name, .. } if server_name.to_str() == "b.example")
        );
        assert!(matches!(t[2], Transport::Plain));
        let first = clients
            .configs
            .lock()
            .unwrap()
            .values()
            .next()
            .cloned()
            .unwrap();
        assert_eq!(
            clients.configs.lock().unwrap().len(),
            1,
            "a and b trust the same roots"
        );

        // The next generation (or another worker) reuses it: same sessions cache.
        let again = aigw_core::config::parse_str(CFG, None).unwrap();
        assert_eq!(clients.transports(&again).len(), 3);
        let second = clients
            .configs
            .lock()
            .unwrap()
            .values()
            .next()
            .cloned()
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second));

        // A generation without https backends forgets it.
        let plain = CFG
            .replace("https://", "http://")
            .replace("tls_server_name = \"b.example\"\n", "");
        let plain = aigw_core::config::parse_str(&plain, None).unwrap();
        assert!(clients
            .transports(&plain)
            .iter()
            .all(|t| matches!(t, Transport::Plain)));
        assert!(clients.configs.lock().unwrap().is_empty());
    }

    #[test]
    fn client_config_offers_http11_only() {
        let c = client_config(&[]).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(!c.enable_early_data);
    }
}
