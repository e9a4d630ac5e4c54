//! `https://` against an in-process rustls server with a self-signed certificate (test-only
//! key pair in tests/tls/, valid for 127.0.0.1 and localhost).

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Start a TLS keep-alive server answering every request with OK_75; returns its port.
fn tls_server() -> u16 {
    let cert = CertificateDer::from(include_bytes!("tls/cert.der").to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        include_bytes!("tls/key.der").to_vec(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut b = [0u8; 4096];
                    loop {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                        while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..i + 4);
                            if s.write_all(OK_75).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    });
    port
}

#[test]
fn https_with_insecure_completes_and_verification_rejects_self_signed() {
    let port = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("https://127.0.0.1:{port}/");
    let o = loadgen(&[
        &url,
        "--insecure",
        "--rate=200",
        "--num-conns=10",
        "--num-calls=2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = result(&json);
    assert_eq!(r.counts.replies_received, 20, "{:?}", r.errors);
    assert_eq!(r.errors_total(), 0);
    assert_eq!(r.counts.body_bytes, 20 * 75);

    // httperf style --ssl, without --insecure: the self-signed certificate is rejected and the
    // failure is counted (class "other"), not a crash.
    let port_s = port.to_string();
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--ssl",
        "--num-conns=2",
        "--timeout=2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = result(&json);
    assert_eq!(r.counts.replies_received, 0);
    assert_eq!(r.errors.other, 2, "{:?}", r.errors);
}
