//! The health checker: a thread with a single-threaded tokio runtime that
//! checks every target each interval (HTTP GET through reqwest, or a TCP
//! connect), all targets of a round concurrently, each bounded by the
//! check timeout, and sends the results to the packet thread (waking it
//! through the self-pipe). The packet thread owns the [`balancer::health`]
//! state machine; this thread only measures.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddrV4;
use std::sync::mpsc::Sender;
use std::time::Duration;

use anyhow::Context;
use balancer::config::{CheckKind, HealthSettings};

/// One check result: the target's index and why it failed, if it did.
pub type CheckResult = (usize, Result<(), String>);

/// Starts the checker for `targets` (index = position). Returns at once;
/// the thread ends when the receiver is dropped.
pub fn spawn(
    targets: Vec<SocketAddrV4>,
    settings: HealthSettings,
    results: Sender<CheckResult>,
    mut wake: File,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating the health checker's runtime")?;
    let timeout = Duration::from_millis(settings.timeout_ms.into());
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        // A fresh connection per check: what new flows need is a server
        // that accepts connections.
        .pool_max_idle_per_host(0)
        .build()
        .context("creating the HTTP health-check client")?;
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut ticker =
                    tokio::time::interval(Duration::from_millis(settings.interval_ms.into()));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let round: Vec<_> = targets
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let (client, kind, t) = (client.clone(), settings.check.clone(), *t);
                            tokio::spawn(
                                async move { (i, check(&client, &kind, t, timeout).await) },
                            )
                        })
                        .collect();
                    for h in round {
                        let Ok(r) = h.await else { continue };
                        if results.send(r).is_err() {
                            return;
                        }
                    }
                    let _ = wake.write(&[1]);
                }
            })
        })
        .context("cannot start the health-check thread")?;
    Ok(())
}

/// One check of `target`.
async fn check(
    client: &reqwest::Client,
    kind: &CheckKind,
    target: SocketAddrV4,
    timeout: Duration,
) -> Result<(), String> {
    match kind {
        CheckKind::None => Ok(()),
        CheckKind::Tcp => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect: {e}")),
                Err(_) => Err(format!(
                    "connect: no answer within {} ms",
                    timeout.as_millis()
                )),
            }
        }
        CheckKind::Http {
            path,
            expect_status,
        } => {
            let url = format!("http://{target}{path}");
            match client.get(&url).send().await {
                Ok(r) if r.status().as_u16() == *expect_status => Ok(()),
                Ok(r) => Err(format!(
                    "GET {path}: status {}, expected {expect_status}",
                    r.status().as_u16()
                )),
                Err(e) if e.is_timeout() => Err(format!(
                    "GET {path}: no answer within {} ms",
                    timeout.as_millis()
                )),
                Err(e) => Err(format!("GET {path}: {e}")),
            }
        }
    }
}
