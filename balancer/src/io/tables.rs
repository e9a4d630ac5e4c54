//! The table-builder thread: builds the sh/mh lookup tables the engine
//! asks for ([`Balancer::take_table_request`]) off the packet thread, so a
//! weight, health or membership change never stalls packets for the
//! milliseconds a 65537-slot Maglev table takes. The built table comes back
//! as an `Arc` over a channel that the packet loop polls; installing it is
//! one pointer swap between two decisions.
//!
//! [`Balancer::take_table_request`]: balancer::engine::Balancer::take_table_request

use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;

use anyhow::Context;
use balancer::sched::{HashTable, TableRequest};

/// The packet thread's end of the builder.
#[derive(Debug)]
pub struct Tables {
    requests: Sender<TableRequest>,
    built: Receiver<Arc<HashTable>>,
}

impl Tables {
    /// Starts the builder thread; `wake` (the self-pipe) nudges the packet
    /// loop when a table is ready.
    pub fn spawn(mut wake: File) -> anyhow::Result<Self> {
        let (req_tx, req_rx) = mpsc::channel::<TableRequest>();
        let (res_tx, res_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tables".into())
            .spawn(move || {
                for r in req_rx {
                    if res_tx.send(Arc::new(HashTable::build(&r))).is_err() {
                        break;
                    }
                    // A full pipe already means "wake up".
                    let _ = wake.write(&[1]);
                }
            })
            .context("cannot start the table-builder thread")?;
        Ok(Self {
            requests: req_tx,
            built: res_rx,
        })
    }

    /// Asks for a table; false if the builder is gone.
    pub fn request(&self, r: TableRequest) -> bool {
        self.requests.send(r).is_ok()
    }

    /// A built table, if one is ready (never blocks).
    pub fn ready(&self) -> Result<Arc<HashTable>, TryRecvError> {
        self.built.try_recv()
    }
}
