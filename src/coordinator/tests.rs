//! The coordinator without a broker: requests as values, time as numbers.

use bytes::Bytes;

use super::group::{ClassicGroup, ClassicGroupMember};
use super::messages::{JoinRequest, JoinResult, Pending, SyncRequest};
use super::*;

const T0: i64 = 1_700_000_000_000;

fn member(id: &str, now_ms: i64) -> ClassicGroupMember {
    ClassicGroupMember {
        id: id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        assignment: Bytes::new(),
        join_waiter: None,
        sync_waiter: None,
        last_heartbeat_ms: now_ms,
    }
}

fn settings(initial_delay_ms: i32) -> GroupSettings {
    GroupSettings {
        initial_rebalance_delay_ms: initial_delay_ms,
        ..GroupSettings::default()
    }
}

fn coordinator(initial_delay_ms: i32) -> GroupCoordinator {
    let c = GroupCoordinator::new(settings(initial_delay_ms), T0);
    c.load(Vec::new(), T0);
    c
}

/// A v3 JoinGroup (no MEMBER_ID_REQUIRED step) of `member` to group "g".
fn join(member: &str, rebalance_timeout_ms: i32) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: false,
    }
}

fn parked<T: std::fmt::Debug>(p: Pending<T>) -> tokio::sync::oneshot::Receiver<T> {
    match p {
        Pending::Parked(rx) => rx,
        Pending::Ready(v) => panic!("expected a parked request, got {v:?}"),
    }
}

fn ready<T: std::fmt::Debug>(p: Pending<T>) -> T {
    match p {
        Pending::Ready(v) => v,
        Pending::Parked(_) => panic!("expected an answer now"),
    }
}

fn answered(rx: &mut tokio::sync::oneshot::Receiver<JoinResult>) -> Option<JoinResult> {
    rx.try_recv().ok()
}

fn sync(member: &str, generation: i32, assignments: &[(&str, &'static [u8])]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from_static(a)))
            .collect(),
    }
}

#[test]
fn join_completes_when_all_members_rejoined() {
    let now = T0;
    let mut g = ClassicGroup::new();
    let (tx1, mut rx1) = tokio::sync::oneshot::channel();
    g.add_and_join(member("a", now), "consumer", tx1, now, 0);
    let r1 = rx1.try_recv().expect("first member joins at once").unwrap();
    assert_eq!(r1.generation_id, 1);
    assert_eq!(r1.leader.as_str(), "a");
    assert_eq!(r1.members.len(), 1);
    assert_eq!(g.state, ClassicGroupState::CompletingRebalance);

    // A second member: the group waits for "a" to rejoin.
    let (tx2, mut rx2) = tokio::sync::oneshot::channel();
    g.add_and_join(member("b", now), "consumer", tx2, now, 0);
    assert_eq!(g.state, ClassicGroupState::PreparingRebalance);
    assert!(rx2.try_recv().is_err(), "held until a rejoins");
    let (tx1, mut rx1) = tokio::sync::oneshot::channel();
    g.members.get_mut("a").unwrap().join_waiter = Some(tx1);
    g.maybe_complete_join(now, false);
    let (r1, r2) = (
        rx1.try_recv().unwrap().unwrap(),
        rx2.try_recv().unwrap().unwrap(),
    );
    assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
    assert_eq!(r1.members.len(), 2, "the leader gets every member");
    assert!(r2.members.is_empty());

    // "b" goes away: "a" is alone in generation 3 once it rejoins.
    g.state = ClassicGroupState::Stable;
    g.remove_member("b", now);
    assert_eq!(g.state, ClassicGroupState::PreparingRebalance);
    g.maybe_complete_join(now + 31_000, true);
    assert_eq!(
        g.state,
        ClassicGroupState::Empty,
        "a never rejoined: dropped"
    );
    assert_eq!(g.generation, 3);
}

#[test]
fn protocol_votes_pick_the_common_favourite() {
    let now = T0;
    let mut g = ClassicGroup::new();
    let mut a = member("a", now);
    a.protocols = vec![
        ("cooperative-sticky".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    let mut b = member("b", now);
    b.protocols = vec![("range".into(), Bytes::new())];
    g.members.insert("a".into(), a);
    g.members.insert("b".into(), b);
    assert_eq!(g.select_protocol().as_deref(), Some("range"));
}

#[test]
fn the_initial_delay_is_extended_by_a_late_joiner_and_bounded_by_the_rebalance_timeout() {
    // Delay 3 s, rebalance timeout 7 s: at most 3 + 3 + 1 s in all.
    let c = coordinator(3_000);
    let mut a = parked(c.join_group(join("", 7_000), T0));
    c.tick(T0 + 1_000);
    let mut b = parked(c.join_group(join("", 7_000), T0 + 1_000));
    c.tick(T0 + 2_999);
    assert!(answered(&mut a).is_none(), "the first delay runs");
    // At 3 s the delay ends, but b arrived during it: 3 s more.
    c.tick(T0 + 3_000);
    assert!(answered(&mut a).is_none(), "extended by the late joiner");
    assert_eq!(
        c.describe("g").unwrap().state,
        ClassicGroupState::PreparingRebalance
    );
    let mut d = parked(c.join_group(join("", 7_000), T0 + 4_000));
    c.tick(T0 + 5_999);
    assert!(answered(&mut a).is_none());
    // At 6 s: d arrived, but only 1 s of the rebalance timeout is left.
    c.tick(T0 + 6_000);
    assert!(answered(&mut a).is_none(), "extended by what is left");
    let mut e = parked(c.join_group(join("", 7_000), T0 + 6_500));
    c.tick(T0 + 6_999);
    assert!(answered(&mut a).is_none());
    // At 7 s the rebalance timeout is used up: no more extensions.
    c.tick(T0 + 7_000);
    let results: Vec<_> = [&mut a, &mut b, &mut d, &mut e]
        .into_iter()
        .map(|rx| {
            answered(rx)
                .expect("answered at the end of the delay")
                .unwrap()
        })
        .collect();
    assert!(results.iter().all(|r| r.generation_id == 1));
    assert_eq!(results[0].members.len(), 4, "the leader sees all four");
}

#[test]
fn without_late_joiners_the_initial_delay_ends_once() {
    let c = coordinator(3_000);
    let mut a = parked(c.join_group(join("", 60_000), T0));
    c.tick(T0 + 2_999);
    assert!(answered(&mut a).is_none());
    c.tick(T0 + 3_000);
    let r = answered(&mut a).expect("answered after one delay").unwrap();
    assert_eq!((r.generation_id, r.members.len()), (1, 1));
}

/// One member, joined and synced in generation 1 of group "g".
fn stable_group(c: &GroupCoordinator) -> String {
    let mut rx = parked(c.join_group(join("", 30_000), T0));
    let id = rx.try_recv().unwrap().unwrap().member_id;
    let mut rx = parked(c.sync_group(sync(&id, 1, &[(&id, b"mine")]), T0));
    assert_eq!(&rx.try_recv().unwrap().unwrap().assignment[..], b"mine");
    id
}

#[test]
fn a_stored_group_reloads_stable_and_its_members_have_one_session_timeout_to_heartbeat() {
    let c = coordinator(0);
    let id = stable_group(&c);
    let records = c.take_records();
    let [GroupRecord::Store(stored)] = &records[..] else {
        panic!("one group to store, got {records:?}");
    };
    assert_eq!((stored.generation_id, stored.members.len()), (1, 1));
    assert_eq!(&stored.members[0].subscription[..], b"sub");
    assert!(c.take_records().is_empty(), "taken once");

    // Another coordinator (a restarted broker) reloads it much later.
    let later = T0 + 3_600_000;
    let c2 = GroupCoordinator::new(settings(0), later);
    assert_eq!(
        c2.heartbeat("g", &id, None, 1, later),
        Err(GroupError::CoordinatorLoadInProgress)
    );
    c2.load(vec![stored.clone()], later);
    assert_eq!(c2.describe("g").unwrap().state, ClassicGroupState::Stable);
    assert_eq!(c2.heartbeat("g", &id, None, 1, later + 9_000), Ok(()));
    assert_eq!(
        c2.validate_offset_commit("g", &id, None, 1, later + 9_000),
        Ok(())
    );
    let r = ready(c2.sync_group(sync(&id, 1, &[]), later + 9_000)).unwrap();
    assert_eq!(&r.assignment[..], b"mine", "the assignment came back");
    // Without heartbeats its session (10 s) ends: the group empties, and
    // what is stored becomes when it emptied, without members.
    c2.tick(later + 19_001);
    assert_eq!(
        c2.heartbeat("g", &id, None, 1, later + 19_001),
        Err(GroupError::unknown_member(&id))
    );
    c2.tick(later + 60_000);
    let [GroupRecord::Store(emptied)] = &c2.take_records()[..] else {
        panic!("the emptied group is stored");
    };
    assert!(emptied.members.is_empty());
    assert_eq!(emptied.emptied_at_ms, Some(later + 19_001));
    // Another coordinator (a restart, another broker) ages the group's
    // offsets from when it emptied, not from its own start.
    let c3 = GroupCoordinator::new(settings(0), later + 100_000);
    c3.load(vec![emptied.clone()], later + 100_000);
    assert_eq!(c3.offsets_age_from("g"), Some(later + 19_001));
}

#[test]
fn a_reloaded_member_that_never_heartbeats_expires_after_its_session_timeout() {
    let c = coordinator(0);
    let id = stable_group(&c);
    let [GroupRecord::Store(stored)] = &c.take_records()[..] else {
        panic!("one group to store");
    };
    let c2 = GroupCoordinator::new(settings(0), T0);
    c2.load(vec![stored.clone()], T0 + 100);
    c2.tick(T0 + 100 + 10_000);
    assert_eq!(
        c2.heartbeat("g", &id, None, 1, T0 + 10_100),
        Ok(()),
        "not before its session ends"
    );
    c2.tick(T0 + 10_100 + 10_001);
    assert!(c2.heartbeat("g", &id, None, 1, T0 + 20_101).is_err());
}

#[test]
fn a_group_emptied_by_a_leave_is_stored_emptied_and_a_deleted_one_is_removed() {
    let c = coordinator(0);
    let id = stable_group(&c);
    let _ = c.take_records();
    assert_eq!(c.leave_group("g", &[(id.clone(), None)], T0), vec![Ok(())]);
    let [GroupRecord::Store(emptied)] = &c.take_records()[..] else {
        panic!("the emptied group is stored");
    };
    assert_eq!(
        (emptied.members.len(), emptied.emptied_at_ms),
        (0, Some(T0))
    );
    assert_eq!(c.mark_dead("g"), Ok(true));
    assert_eq!(
        ready(c.join_group(join("", 1_000), T0)).unwrap_err(),
        GroupError::GroupDead
    );
    c.forget_dead("g");
    assert_eq!(c.take_records(), vec![GroupRecord::Delete("g".into())]);
    assert_eq!(c.mark_dead("ghost"), Ok(false));
}

#[test]
fn offset_expiry_is_due_on_its_own_interval() {
    let c = GroupCoordinator::new(
        GroupSettings {
            offsets_retention_ms: 1_000,
            offsets_retention_check_interval_ms: 500,
            ..GroupSettings::default()
        },
        T0,
    );
    c.load(Vec::new(), T0);
    assert_eq!(c.tick(T0 + 499).expire_offsets_before, None);
    assert_eq!(c.tick(T0 + 500).expire_offsets_before, Some(T0 - 500));
    assert_eq!(c.tick(T0 + 600).expire_offsets_before, None);
    assert_eq!(c.tick(T0 + 1_000).expire_offsets_before, Some(T0));
    // A group never seen here ages from the coordinator's start.
    assert_eq!(c.offsets_age_from("standalone"), Some(T0));
}
