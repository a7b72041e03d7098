//! The handshake over real loopback sockets: a good one, and each way to be refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn secret(byte: u8) -> JobSecret {
    JobSecret::new(vec![byte; 32]).unwrap()
}

fn hello(identity: &str) -> Hello {
    Hello {
        identity: identity.into(),
        build: b"build-1".to_vec(),
        config: b"config-1".to_vec(),
    }
}

/// Runs the handshake between a dialer and a listener over loopback; returns both outcomes
/// (dialer's, listener's).
fn pair(
    dialer: (JobSecret, Hello),
    listener: (JobSecret, Hello),
) -> (Result<Hello>, Result<Hello>) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let accepting = thread::spawn(move || {
        let (stream, _) = socket.accept().unwrap();
        handshake(&stream, Side::Listener, &listener.0, &listener.1, TIMEOUT)
    });
    let stream = TcpStream::connect(addr).unwrap();
    let dialed = handshake(&stream, Side::Dialer, &dialer.0, &dialer.1, TIMEOUT);
    drop(stream);
    (dialed, accepting.join().unwrap())
}

fn message(outcome: Result<Hello>) -> (String, String) {
    match outcome {
        Err(Error::Handshake { peer, message }) => (peer, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn both_sides_learn_the_other() {
    let (d, l) = pair(
        (secret(1), hello("worker-1")),
        (secret(1), hello("coordinator")),
    );
    assert_eq!(d.unwrap().identity, b"coordinator");
    assert_eq!(l.unwrap().identity, b"worker-1");
}

#[test]
fn a_wrong_secret_is_refused_on_both_sides() {
    let (d, l) = pair((secret(1), hello("w")), (secret(2), hello("c")));
    let (peer, msg) = message(l);
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    assert!(msg.contains("does not match this job's secret"), "{msg}");
    let (_, msg) = message(d);
    assert!(msg.contains("does not match this job's secret"), "{msg}");
}

#[test]
fn another_build_or_config_is_refused_saying_which() {
    let mut other = hello("w-2");
    other.build = b"build-2".to_vec();
    let (_, l) = pair((secret(1), other), (secret(1), hello("c")));
    let (peer, msg) = message(l);
    assert!(peer.starts_with("`w-2` at 127.0.0.1:"), "{peer}");
    assert!(msg.contains("build fingerprint differs"), "{msg}");
    assert!(
        msg.contains("`build-1`") && msg.contains("`build-2`"),
        "{msg}"
    );

    let mut other = hello("w-3");
    other.config = vec![0xff, 0x00];
    let (d, _) = pair((secret(1), hello("w")), (secret(1), other));
    let (peer, msg) = message(d);
    assert!(peer.starts_with("`w-3` at"), "{peer}");
    assert!(
        msg.contains("config hash differs") && msg.contains("0xff00"),
        "{msg}"
    );
}

/// Starts a listener's handshake and hands the test the raw client socket.
fn raw_client(secret: JobSecret) -> (TcpStream, thread::JoinHandle<Result<Hello>>) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let accepting = thread::spawn(move || {
        let (stream, _) = socket.accept().unwrap();
        handshake(
            &stream,
            Side::Listener,
            &secret,
            &hello("c"),
            Duration::from_millis(500),
        )
    });
    (TcpStream::connect(addr).unwrap(), accepting)
}

#[test]
fn a_foreign_client_is_told_apart_from_a_wrong_secret() {
    let (mut client, accepting) = raw_client(secret(1));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let (_, msg) = message(accepting.join().unwrap());
    assert!(msg.contains("not a Solstice transport peer"), "{msg}");
    assert!(msg.contains("`GET / `"), "{msg}");
}

#[test]
fn another_protocol_version_is_named() {
    let (mut client, accepting) = raw_client(secret(1));
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge[..4].copy_from_slice(&MAGIC);
    challenge[4..6].copy_from_slice(&9u16.to_le_bytes());
    client.write_all(&challenge).unwrap();
    let (_, msg) = message(accepting.join().unwrap());
    assert!(msg.contains("version 9, this build speaks 1"), "{msg}");
}

#[test]
fn a_reflected_challenge_is_refused() {
    // The client sends back the listener's own challenge, and then its own proof.
    let (mut client, accepting) = raw_client(secret(1));
    let mut theirs = [0u8; CHALLENGE_LEN];
    client.read_exact(&mut theirs).unwrap();
    client.write_all(&theirs).unwrap();
    let (_, msg) = message(accepting.join().unwrap());
    assert!(msg.contains("reflected challenge"), "{msg}");

    // With the side byte flipped, the echoed nonce gives it away.
    let (mut client, accepting) = raw_client(secret(1));
    client.read_exact(&mut theirs).unwrap();
    theirs[6] = Side::Dialer.byte();
    client.write_all(&theirs).unwrap();
    let (_, msg) = message(accepting.join().unwrap());
    assert!(msg.contains("echoed this end's nonce"), "{msg}");
}

#[test]
fn a_proof_is_bound_to_its_side() {
    let (d, l) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
    let s = secret(7);
    let dialer = proof(&s, Side::Dialer, &d, &l);
    assert_ne!(dialer, proof(&s, Side::Listener, &d, &l));
    assert!(prover(&s, Side::Listener, &d, &l)
        .verify_slice(&dialer)
        .is_err());
    assert!(prover(&s, Side::Dialer, &d, &l)
        .verify_slice(&dialer)
        .is_ok());
    assert!(prover(&s, Side::Dialer, &l, &d)
        .verify_slice(&dialer)
        .is_err());
}

#[test]
fn a_silent_peer_times_out() {
    let (client, accepting) = raw_client(secret(1));
    let start = Instant::now();
    let (_, msg) = message(accepting.join().unwrap());
    assert!(msg.contains("timed out after 500ms"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(client);
}

#[test]
fn secrets() {
    let hex = generate_secret_hex().unwrap();
    assert_eq!(hex.len(), 64);
    assert_ne!(hex, generate_secret_hex().unwrap());
    assert!(JobSecret::from_hex(&hex).is_ok());
    assert!(JobSecret::from_hex("abc").is_err());
    assert!(JobSecret::from_hex(&"zz".repeat(16)).is_err());
    assert!(JobSecret::new(b"short".to_vec()).is_err());
    assert_eq!(format!("{:?}", secret(3)), "JobSecret(32 bytes)");
}
