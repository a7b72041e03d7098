//! Connections over real loopback sockets (ports picked by the system): streams of messages,
//! credits against a slow reader, and each way a connection fails. The tests drive the ends
//! themselves and wait for the wake-ups the ends promise (through the executor's
//! [`ExternalWakes`]), so a lost wake-up fails a test at its deadline. The stress test with the
//! executor's pool is in `executor/tests.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::frame::{put_frame, Header, Kind};
use super::handshake::{handshake, Side};
use super::*;
use crate::core::task::{Cx, JobCounters, NoCheckpoints, TaskId, Wake};
use crate::runtime::executor::ExternalWakes;
use crate::runtime::message::{Input, Msg, Output};

/// How long any one wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);

mod bench;

/// An endpoint of the test job (one secret, build and config), named `identity`.
pub(crate) fn endpoint(identity: &str, config: TransportConfig) -> Endpoint {
    Endpoint {
        secret: JobSecret::new(*b"a test job secret, 32 bytes long").unwrap(),
        hello: Hello {
            identity: identity.into(),
            build: b"test build".to_vec(),
            config: b"test config".to_vec(),
        },
        config,
    }
}

/// Two connected ends: (dialer `a`, listener `b`).
pub(crate) fn pair(config: TransportConfig) -> (Connection, Connection) {
    let listener = Listener::bind(localhost(), endpoint("b", config.clone())).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || listener.accept());
    let a = connect(addr, &endpoint("a", config)).unwrap();
    let b = accepting.join().unwrap().unwrap();
    (a, b)
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct NoWake;

impl Wake for NoWake {
    fn wake(&self, _: TaskId) {}
}

/// Runs `f` with the context of task `task` (the ends here are woken through the hub).
fn with_cx<R>(task: TaskId, f: impl FnOnce(&mut Cx<'_>) -> R) -> R {
    let counters = JobCounters::default();
    let finals = Mutex::new(Vec::new());
    let mut cx = Cx {
        waker: &NoWake,
        task,
        stage: 0,
        subtask: 0,
        counters: &counters,
        final_states: &finals,
        checkpoints: &NoCheckpoints,
    };
    f(&mut cx)
}

/// Waits until `cond` holds; fails the test at the deadline.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `task` was woken through `hub` (a wake-up the ends promised).
fn woken(hub: &ExternalWakes, task: TaskId) {
    eventually(&format!("task {task} is woken"), || {
        hub.take_woken().contains(&task)
    });
}

type Rec = (u64, String);

fn batch(n: u64) -> Vec<Rec> {
    (0..n % 7 + 1)
        .map(|i| (n * 100 + i, format!("r{n}-{i}")))
        .collect()
}

/// The messages of a test stream: batches with a barrier every 5, then the end.
fn stream(n: u64) -> Vec<Msg<Rec>> {
    let mut msgs = Vec::new();
    for i in 0..n {
        msgs.push(Msg::Data(batch(i)));
        if i % 5 == 4 {
            msgs.push(Msg::Barrier(i / 5 + 1));
        }
    }
    msgs.push(Msg::End);
    msgs
}

fn same(a: &Msg<Rec>, b: &Msg<Rec>) -> bool {
    match (a, b) {
        (Msg::Data(x), Msg::Data(y)) => x == y,
        (Msg::Barrier(x), Msg::Barrier(y)) => x == y,
        (Msg::End, Msg::End) => true,
        _ => false,
    }
}

/// Sends `msgs` on `out` (task 0) and reads them from `input` (task 1), waiting for the
/// wake-ups whenever neither can move; returns what arrived.
fn transfer(
    hub: &ExternalWakes,
    out: &mut RemoteOutput<Rec>,
    input: &mut RemoteInput<Rec>,
    msgs: Vec<Msg<Rec>>,
) -> Vec<Msg<Rec>> {
    let total = msgs.len();
    let mut to_send = msgs.into_iter();
    let mut pending = None;
    let mut got = Vec::new();
    while got.len() < total {
        let mut moved = false;
        while let Some(msg) = pending.take().or_else(|| to_send.next()) {
            pending = with_cx(0, |cx| out.try_send(msg, cx)).unwrap();
            if pending.is_some() {
                break;
            }
            moved = true;
        }
        while let Some(msg) = with_cx(1, |cx| input.try_recv(cx)).unwrap() {
            got.push(msg);
            moved = true;
        }
        if !moved {
            // Both ends said they would be woken: the reader when a frame arrives, the sender
            // when credit does.
            let start = Instant::now();
            loop {
                let w = hub.take_woken();
                if !w.is_empty() {
                    break;
                }
                assert!(
                    start.elapsed() < DEADLINE,
                    "lost wake-up after {} messages",
                    got.len()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    got
}

#[test]
fn message_streams_round_trip_both_ways() {
    let (a, b) = pair(TransportConfig::default());
    assert_eq!(a.peer_hello().identity, b"b");
    assert!(b.peer().starts_with("a at 127.0.0.1:"), "{}", b.peer());
    let hub = ExternalWakes::new(2);
    // The same channel id in each direction: two independent channels.
    let mut a_out = a.open_output::<Rec>(7, hub.waker(0).unwrap()).unwrap();
    let mut b_in = b.open_input::<Rec>(7, 4, hub.waker(1).unwrap()).unwrap();
    let mut b_out = b.open_output::<Rec>(7, hub.waker(0).unwrap()).unwrap();
    let mut a_in = a.open_input::<Rec>(7, 2, hub.waker(1).unwrap()).unwrap();

    let want = stream(200);
    let got = transfer(&hub, &mut a_out, &mut b_in, stream(200));
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(g, w)| same(g, w)));
    let got = transfer(&hub, &mut b_out, &mut a_in, stream(50));
    assert!(got.iter().zip(&stream(50)).all(|(g, w)| same(g, w)));
    assert_eq!(a_out.stats().data_frames, 200);
    assert!(b_in.stats().max_queued <= 4);
    assert!(a_in.stats().max_queued <= 2);

    // Opening a channel twice, or the reserved id, is refused.
    assert!(a.open_output::<Rec>(7, hub.waker(0).unwrap()).is_err());
    assert!(a
        .open_input::<Rec>(frame::CONNECTION, 1, hub.waker(0).unwrap())
        .is_err());
    assert!(a.open_input::<Rec>(9, 0, hub.waker(0).unwrap()).is_err());
}

#[test]
fn a_slow_receiver_holds_the_sender_to_its_credits() {
    const CAPACITY: u32 = 3;
    let (a, b) = pair(TransportConfig::default());
    let hub = ExternalWakes::new(2);
    let mut out = a.open_output::<Rec>(1, hub.waker(0).unwrap()).unwrap();
    let mut input = b
        .open_input::<Rec>(1, CAPACITY, hub.waker(1).unwrap())
        .unwrap();
    let mut next = 0u64;
    let mut received = 0u64;
    eventually("the first credits arrive", || {
        out.stats().credits == CAPACITY
    });
    for round in 0..60 {
        // Send until handed back: never more than the credits granted.
        let mut pending = Some(Msg::Data(batch(next)));
        loop {
            let msg = pending.take().unwrap_or_else(|| Msg::Data(batch(next)));
            pending = with_cx(0, |cx| out.try_send(msg, cx)).unwrap();
            if pending.is_some() {
                break;
            }
            next += 1;
        }
        // Credit granted for earlier reads may land right after the send was handed back, so
        // what is held now need not be zero; what was sent plus what is held never exceeds
        // what the receiver granted.
        let (o, i) = (out.stats(), input.stats());
        assert!(
            o.data_frames + u64::from(o.credits) <= i.credits_total,
            "{o:?} {i:?}"
        );
        assert!(next - received <= u64::from(CAPACITY));
        // The reader takes one or more: credit returns and the blocked sender is woken.
        eventually("the inbox fills", || input.stats().data_frames == next);
        let take = (1 + round % CAPACITY as u64).min(next - received);
        for _ in 0..take {
            match with_cx(1, |cx| input.try_recv(cx)).unwrap() {
                Some(Msg::Data(b)) => assert_eq!(b, batch(received)),
                other => panic!("expected batch {received}, got {:?}", other.is_some()),
            }
            received += 1;
        }
        woken(&hub, 0);
        assert!(out.stats().credits >= 1);
    }
    let (o, i) = (out.stats(), input.stats());
    assert_eq!(o.data_frames, next);
    assert!(i.max_queued <= CAPACITY as usize, "{i:?}");
    assert!(o.max_queued <= CAPACITY as usize, "{o:?}");
    // Barriers and the end need no credit.
    assert!(with_cx(0, |cx| out.try_send(Msg::Barrier(9), cx))
        .unwrap()
        .is_none());
    assert!(with_cx(0, |cx| out.try_send(Msg::End, cx))
        .unwrap()
        .is_none());
}

#[test]
fn an_empty_inbox_wakes_its_reader_when_a_frame_arrives() {
    let (a, b) = pair(TransportConfig::default());
    let hub = ExternalWakes::new(2);
    let mut out = a.open_output::<Rec>(3, hub.waker(0).unwrap()).unwrap();
    let mut input = b.open_input::<Rec>(3, 1, hub.waker(1).unwrap()).unwrap();
    for i in 0..50 {
        assert!(with_cx(1, |cx| input.try_recv(cx)).unwrap().is_none());
        eventually("credit arrives", || out.stats().credits == 1);
        assert!(with_cx(0, |cx| out.try_send(Msg::Data(batch(i)), cx))
            .unwrap()
            .is_none());
        woken(&hub, 1);
        assert!(matches!(
            with_cx(1, |cx| input.try_recv(cx)).unwrap(),
            Some(Msg::Data(_))
        ));
    }
}

#[test]
fn a_wrong_secret_is_refused_before_any_frame() {
    let config = TransportConfig::default();
    let listener = Listener::bind(localhost(), endpoint("b", config.clone())).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || listener.accept().map(|_| ()));
    let mut wrong = endpoint("intruder", config.clone());
    wrong.secret = JobSecret::from_hex(&generate_secret_hex().unwrap()).unwrap();
    let dialed = connect(addr, &wrong);
    assert!(matches!(dialed, Err(Error::Handshake { .. })), "{dialed:?}");
    match accepting.join().unwrap() {
        Err(Error::Handshake { peer, message }) => {
            assert!(peer.starts_with("127.0.0.1:"), "{peer}");
            assert!(message.contains("secret"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A client that sends a proof of its own making and then frames: the refusal is about the
    // proof; the frames are never read.
    let listener = Listener::bind(localhost(), endpoint("b", config)).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || listener.accept().map(|_| ()));
    let mut raw = TcpStream::connect(addr).unwrap();
    let mut challenge = [0u8; 40];
    raw.read_exact(&mut challenge).unwrap();
    challenge[6] = 1; // a dialer
    challenge[8] ^= 0xff; // another nonce
    raw.write_all(&challenge).unwrap();
    let mut bytes = vec![0u8; 32];
    put_frame(&mut bytes, Kind::Data, 0, &[0xab; 100]);
    raw.write_all(&bytes).unwrap();
    let refused = accepting.join().unwrap();
    assert!(
        matches!(&refused, Err(Error::Handshake { message, .. }) if message.contains("proof")),
        "{refused:?}"
    );
}

/// A client that passes the handshake and then writes `bytes` as they are.
fn authenticated_raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    let e = endpoint("raw", TransportConfig::default());
    handshake(&stream, Side::Dialer, &e.secret, &e.hello, DEADLINE).unwrap();
    (&stream).write_all(bytes).unwrap();
    stream
}

#[test]
fn garbage_closes_its_connection_and_spares_the_others() {
    let config = TransportConfig {
        max_frame_bytes: 1 << 20,
        ..TransportConfig::default()
    };
    let listener = Listener::bind(localhost(), endpoint("b", config.clone())).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let accepting = std::thread::spawn(move || {
        for _ in 0..5 {
            if tx.send(listener.accept()).is_err() {
                return;
            }
        }
    });
    let next = || rx.recv_timeout(DEADLINE).expect("accept");
    let hub = ExternalWakes::new(2);

    // A good connection, streaming throughout.
    let good = connect(addr, &endpoint("good", config.clone())).unwrap();
    let served = next().unwrap();
    let mut out = good.open_output::<Rec>(1, hub.waker(0).unwrap()).unwrap();
    let mut input = served
        .open_input::<Rec>(1, 2, hub.waker(1).unwrap())
        .unwrap();
    let got = transfer(
        &hub,
        &mut out,
        &mut input,
        stream(20)[..20].iter().map(copy).collect(),
    );
    assert_eq!(got.len(), 20);

    // Random bytes instead of a handshake.
    let mut noise = TcpStream::connect(addr).unwrap();
    let random: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    noise.write_all(&random).unwrap();
    let refused = next();
    assert!(
        matches!(&refused, Err(Error::Handshake { peer, message })
            if peer.starts_with("127.0.0.1:") && message.contains("not a Solstice transport peer")),
        "{refused:?}"
    );

    // Authenticated, then an oversized length, then an unknown kind, then a truncated frame.
    let over = Header {
        kind: Kind::Data,
        channel: 1,
        len: 64 << 20,
    }
    .encode();
    let mut unknown = Header {
        kind: Kind::End,
        channel: 1,
        len: 0,
    }
    .encode();
    unknown[4] = 0x42;
    let mut truncated = Vec::new();
    put_frame(&mut truncated, Kind::Control, 5, &[1; 100]);
    truncated.truncate(50);
    for (bytes, want) in [
        (
            &over[..],
            "oversized Data frame: 67108864 bytes, more than the limit of 1048576",
        ),
        (&unknown[..], "unknown frame kind 66"),
        (&truncated[..], "truncated frame"),
    ] {
        let raw = authenticated_raw(addr, bytes);
        if want == "truncated frame" {
            raw.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let conn = next().unwrap();
        eventually("the connection fails", || conn.error().is_some());
        match conn.error() {
            Some(Error::Transport { peer, message }) => {
                assert!(peer.starts_with("raw at 127.0.0.1:"), "{peer}");
                assert!(message.contains(want), "{message}");
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
        drop(raw);
    }
    accepting.join().unwrap();

    // The good connection still works.
    let got = transfer(&hub, &mut out, &mut input, stream(30));
    assert_eq!(got.len(), stream(30).len());
    assert!(good.error().is_none() && served.error().is_none());
}

fn copy(m: &Msg<Rec>) -> Msg<Rec> {
    match m {
        Msg::Data(b) => Msg::Data(b.clone()),
        Msg::Barrier(n) => Msg::Barrier(*n),
        Msg::End => Msg::End,
    }
}

#[test]
fn a_data_frame_without_credit_fails_the_connection() {
    let listener = Listener::bind(localhost(), endpoint("b", TransportConfig::default())).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || listener.accept());
    let mut bytes = Vec::new();
    put_frame(&mut bytes, Kind::Data, 4, b"not even a batch");
    let raw = authenticated_raw(addr, &bytes);
    let conn = accepting.join().unwrap().unwrap();
    eventually("the connection fails", || conn.error().is_some());
    let message = conn.error().unwrap().to_string();
    assert!(
        message.contains("data frame on channel 4 without credit"),
        "{message}"
    );
    drop(raw);
}

#[test]
fn a_peer_gone_mid_stream_fails_every_channel_naming_it() {
    let (a, b) = pair(TransportConfig::default());
    let hub = ExternalWakes::new(2);
    let mut out = a.open_output::<Rec>(1, hub.waker(0).unwrap()).unwrap();
    let mut input = b.open_input::<Rec>(1, 2, hub.waker(1).unwrap()).unwrap();
    let back = b.open_output::<Rec>(2, hub.waker(1).unwrap()).unwrap();
    let mut back_in = a.open_input::<Rec>(2, 2, hub.waker(0).unwrap()).unwrap();
    let got = transfer(
        &hub,
        &mut out,
        &mut input,
        stream(6)[..6].iter().map(copy).collect(),
    );
    assert_eq!(got.len(), 6);
    // `a` waits on its input, then `b` goes away without ending its streams.
    assert!(with_cx(0, |cx| back_in.try_recv(cx)).unwrap().is_none());
    let _ = hub.take_woken();
    drop((input, back));
    drop(b);
    woken(&hub, 0);
    let expect = |e: Error| match e {
        Error::Transport { peer, message } => {
            assert!(peer.starts_with("b at 127.0.0.1:"), "{peer}");
            assert!(
                message.contains("before the end of stream on channel(s) 2"),
                "{message}"
            );
        }
        other => panic!("expected a transport error, got {other:?}"),
    };
    expect(
        with_cx(0, |cx| back_in.try_recv(cx))
            .err()
            .expect("an error"),
    );
    let sent = (0..100).find_map(|i| with_cx(0, |cx| out.try_send(Msg::Data(batch(i)), cx)).err());
    expect(sent.expect("sending fails"));
}

#[test]
fn a_silent_peer_fails_at_the_heartbeat_timeout() {
    let config = TransportConfig::with_heartbeat_ms(300);
    let listener = Listener::bind(localhost(), endpoint("b", config)).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || listener.accept());
    // Authenticated, then silent: no heartbeats.
    let raw = authenticated_raw(addr, &[]);
    let conn = accepting.join().unwrap().unwrap();
    let hub = ExternalWakes::new(1);
    let mut input = conn.open_input::<Rec>(1, 1, hub.waker(0).unwrap()).unwrap();
    let start = Instant::now();
    assert!(with_cx(0, |cx| input.try_recv(cx)).unwrap().is_none());
    woken(&hub, 0);
    let message = with_cx(0, |cx| input.try_recv(cx))
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("heartbeat timeout") && message.contains("raw at"),
        "{message}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    drop(raw);
}

#[test]
fn heartbeats_keep_an_idle_connection_up() {
    let (a, b) = pair(TransportConfig::with_heartbeat_ms(100));
    // Many timeouts long with no traffic but heartbeats.
    eventually("heartbeats arrive", || {
        a.heartbeats_received() >= 8 && b.heartbeats_received() >= 8
    });
    assert!(a.error().is_none() && b.error().is_none());
}

#[test]
fn control_messages_and_errors_reach_the_peer() {
    let (a, b) = pair(TransportConfig::default());
    for i in 0..300u32 {
        a.send_control(i % 3, &i.to_le_bytes()).unwrap();
        let message: Control = b
            .recv_control(DEADLINE)
            .unwrap()
            .expect("a control message");
        assert_eq!(message, (i % 3, i.to_le_bytes().to_vec()));
    }
    assert!(b.recv_control(Duration::from_millis(1)).unwrap().is_none());

    // An error on one channel reaches its reader; one about the connection closes it.
    let hub = ExternalWakes::new(1);
    let mut out = a.open_output::<Rec>(5, hub.waker(0).unwrap()).unwrap();
    let mut input = b.open_input::<Rec>(5, 1, hub.waker(0).unwrap()).unwrap();
    out.fail("stage `totals` failed").unwrap();
    eventually("the error arrives", || {
        with_cx(0, |cx| input.try_recv(cx)).is_err()
    });
    let mut other = b.open_input::<Rec>(6, 1, hub.waker(0).unwrap()).unwrap();
    a.fail("out of disk");
    eventually("the connection fails", || b.error().is_some());
    let message = with_cx(0, |cx| other.try_recv(cx))
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("a at 127.0.0.1") && message.contains("the peer reported: out of disk"),
        "{message}"
    );
}

/// Drops `conn` on another thread and waits for the drop (which joins the connection's
/// threads) with a deadline.
fn drop_within(conn: Connection) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(conn);
        let _ = tx.send(());
    });
    rx.recv_timeout(DEADLINE)
        .expect("dropping the connection ends its threads");
}

#[test]
fn dropping_a_connection_ends_its_threads_even_with_a_stuck_peer() {
    let listener = Listener::bind(localhost(), endpoint("b", TransportConfig::default())).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = std::thread::spawn(move || listener.accept());
    // A peer that never reads and never closes.
    let raw = authenticated_raw(addr, &[]);
    let conn = accepting.join().unwrap().unwrap();
    drop_within(conn);
    drop(raw);
    let (a, b) = pair(TransportConfig::default());
    drop_within(a);
    eventually("the peer sees the close", || b.error().is_some());
    drop_within(b);
}
