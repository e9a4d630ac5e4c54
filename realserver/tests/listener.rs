//! Library-level socket checks: SO_REUSEPORT groups and inherited TCP_NODELAY.

use std::net::{SocketAddr, TcpStream};

use realserver::listener::{bind_group, ListenOptions};

#[test]
fn group_shares_one_port_and_accepted_sockets_have_nodelay() {
    let opts = ListenOptions {
        backlog: 16,
        freebind: false,
    };
    let group = bind_group("127.0.0.1:0".parse::<SocketAddr>().unwrap(), 3, opts).unwrap();
    assert_eq!(group.len(), 3);
    let port = group[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    for l in &group {
        assert_eq!(l.local_addr().unwrap().port(), port);
        l.set_nonblocking(false).unwrap();
    }
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The kernel hands the connection to one member of the group; poll them all.
    for l in &group {
        l.set_nonblocking(true).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let accepted = loop {
        if let Some(s) = group.iter().find_map(|l| l.accept().ok()) {
            break s.0;
        }
        assert!(std::time::Instant::now() < deadline, "no member accepted");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited");
}

#[test]
fn bind_error_names_the_address() {
    let opts = ListenOptions {
        backlog: 16,
        freebind: false,
    };
    let e = bind_group("192.0.2.7:0".parse().unwrap(), 1, opts).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot listen on 192.0.2.7:0: address not available"),
        "{e}"
    );
}
