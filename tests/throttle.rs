//! Pacing under the API quotas, on paused tokio time (no network): every sliding window is
//! checked over the recorded send instants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use incidentops::api::throttle::ARRIVAL_MARGIN;
use incidentops::api::{CallKind, Limits, Throttle};
use tokio::time::Instant;

/// The server's windows: what the guarantee is checked against.
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
/// The client's windows: the server's plus the arrival margin, which sets the schedule.
const PACED_MINUTE: Duration = MINUTE.saturating_add(ARRIVAL_MARGIN);
const PACED_HOUR: Duration = HOUR.saturating_add(ARRIVAL_MARGIN);

/// Queues `kinds.len()` calls at once (in that order) and returns each call's kind and send
/// offset from the start, in send order.
async fn run_queued(throttle: &Throttle, kinds: Vec<CallKind>) -> Vec<(CallKind, Duration)> {
    let start = Instant::now();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for kind in kinds {
        let throttle = throttle.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            throttle.acquire(kind).await;
            sent.lock().unwrap().push((kind, Instant::now() - start));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut sent = sent.lock().unwrap().clone();
    sent.sort_by_key(|(_, at)| *at);
    sent
}

/// The largest number of sends in any half-open window `[t, t + window)`. Checking windows
/// that start at a send is enough: any window can slide right to its first send.
fn busiest_window(times: &[Duration], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn times_of(sent: &[(CallKind, Duration)], kind: Option<CallKind>) -> Vec<Duration> {
    sent.iter()
        .filter(|(k, _)| kind.is_none_or(|want| *k == want))
        .map(|(_, at)| *at)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn queued_patches_never_exceed_50_in_any_minute_and_run_at_the_quota() {
    let throttle = Throttle::new(Limits::default());
    let sent = run_queued(&throttle, vec![CallKind::Patch; 200]).await;
    let times = times_of(&sent, None);

    assert_eq!(times.len(), 200);
    assert!(busiest_window(&times, MINUTE) <= 50);
    let last = *times.last().unwrap();
    assert!(last <= Duration::from_secs(240), "took {last:?}");
    // Not slower than needed: batches of 50 go out as soon as each minute frees.
    assert_eq!(times[49], Duration::ZERO);
    assert_eq!(times[50], PACED_MINUTE);
    assert_eq!(last, 3 * PACED_MINUTE);
}

#[tokio::test(start_paused = true)]
async fn hourly_quota_holds_and_call_1501_goes_out_when_the_hour_frees() {
    let throttle = Throttle::new(Limits {
        list_per_minute: 100_000,
        get_per_minute: 100_000,
        patch_per_minute: 100_000,
        per_hour: 1500,
    });
    let sent = run_queued(&throttle, vec![CallKind::Get; 1600]).await;
    let times = times_of(&sent, None);

    assert!(busiest_window(&times, HOUR) <= 1500);
    let first = times[0];
    let call_1501 = times[1500];
    assert!(call_1501 - first >= HOUR, "call 1501 at {call_1501:?}");
    assert!(
        call_1501 - first <= HOUR + Duration::from_secs(1),
        "call 1501 at {call_1501:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn mixed_methods_share_the_hourly_budget_and_keep_their_own_minute_quota() {
    let throttle = Throttle::new(Limits::from_quota(50, 120));
    let mut kinds = Vec::new();
    for _ in 0..50 {
        kinds.extend([
            CallKind::List,
            CallKind::Get,
            CallKind::Get,
            CallKind::Patch,
        ]);
    }
    let sent = run_queued(&throttle, kinds).await;
    let all = times_of(&sent, None);

    assert_eq!(all.len(), 200);
    assert!(busiest_window(&all, HOUR) <= 120);
    assert_eq!(all.iter().filter(|t| **t < HOUR).count(), 120);
    assert!(all[120] >= HOUR);
    for (kind, quota) in [
        (CallKind::List, 50),
        (CallKind::Get, 100),
        (CallKind::Patch, 50),
    ] {
        let times = times_of(&sent, Some(kind));
        assert!(busiest_window(&times, MINUTE) <= quota, "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn get_waiting_for_nothing_is_not_held_behind_a_patch_waiting_for_its_minute() {
    let throttle = Throttle::new(Limits::from_quota(1, 1500));
    let start = Instant::now();
    throttle.acquire(CallKind::Patch).await;
    let queued_patch = {
        let throttle = throttle.clone();
        tokio::spawn(async move { throttle.acquire(CallKind::Patch).await })
    };
    tokio::task::yield_now().await;
    throttle.acquire(CallKind::Get).await;
    assert_eq!(Instant::now() - start, Duration::ZERO);
    assert_eq!(queued_patch.await.unwrap(), PACED_MINUTE);
}

#[tokio::test(start_paused = true)]
async fn a_429_pause_blocks_every_task_sharing_the_throttle() {
    let throttle = Throttle::new(Limits::from_quota(1, 1500));
    let start = Instant::now();
    throttle.acquire(CallKind::Patch).await;

    // Queued before the pause, for a slot that frees at 60 s.
    let queued_patch = {
        let throttle = throttle.clone();
        tokio::spawn(async move {
            throttle.acquire(CallKind::Patch).await;
            Instant::now() - start
        })
    };
    // Paused time: this moves the virtual clock on 10 s, it does not wait.
    tokio::time::advance(Duration::from_secs(10)).await;
    // Another task is told to wait 120 s.
    throttle.pause_for(Duration::from_secs(120));
    assert!(throttle.paused_until().is_some());

    let get = {
        let throttle = throttle.clone();
        tokio::spawn(async move {
            throttle.acquire(CallKind::Get).await;
            Instant::now() - start
        })
    };
    let resume = Duration::from_secs(130);
    assert_eq!(queued_patch.await.unwrap(), resume);
    assert_eq!(get.await.unwrap(), resume);
    assert!(throttle.paused_until().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_shorter_pause_never_shortens_a_longer_one() {
    let throttle = Throttle::new(Limits::default());
    let start = Instant::now();
    throttle.pause_for(Duration::from_secs(30));
    throttle.pause_for(Duration::from_secs(5));
    throttle.acquire(CallKind::List).await;
    assert_eq!(Instant::now() - start, Duration::from_secs(30));
}

mod property {
    use super::*;
    use proptest::prelude::*;

    fn kind_strategy() -> impl Strategy<Value = CallKind> {
        prop_oneof![
            Just(CallKind::List),
            Just(CallKind::Get),
            Just(CallKind::Patch)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the arrivals and quotas: no window is exceeded, and no call waits when
        /// every window it belongs to has room (not slower than needed).
        #[test]
        fn windows_are_never_exceeded_and_free_slots_are_used_at_once(
            per_minute in 1u32..6,
            per_hour in 1u32..25,
            calls in proptest::collection::vec((kind_strategy(), 0u64..400), 1..60),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let limits = Limits::from_quota(per_minute, per_hour);
            let sent = runtime.block_on(async {
                let throttle = Throttle::new(limits);
                let start = Instant::now();
                let mut sent = Vec::new();
                for (kind, gap) in calls {
                    tokio::time::sleep(Duration::from_secs(gap)).await;
                    let arrived = Instant::now() - start;
                    throttle.acquire(kind).await;
                    sent.push((kind, arrived, Instant::now() - start));
                }
                sent
            });

            let all: Vec<Duration> = sent.iter().map(|(_, _, at)| *at).collect();
            prop_assert!(busiest_window(&all, HOUR) <= per_hour as usize);
            for kind in CallKind::ALL {
                let times: Vec<Duration> =
                    sent.iter().filter(|(k, _, _)| *k == kind).map(|(_, _, at)| *at).collect();
                prop_assert!(busiest_window(&times, MINUTE) <= limits.per_minute(kind) as usize);
            }
            for (i, (kind, arrived, at)) in sent.iter().enumerate() {
                if at > arrived {
                    // It waited: at the send instant minus a hair, some window was full.
                    let before = &sent[..i];
                    let in_window = |window: Duration, same_kind: bool| {
                        before
                            .iter()
                            .filter(|(k, _, t)| (!same_kind || k == kind) && *t + window > *at - Duration::from_millis(1))
                            .count()
                    };
                    let minute_full = in_window(PACED_MINUTE, true) >= limits.per_minute(*kind) as usize;
                    let hour_full = in_window(PACED_HOUR, false) >= per_hour as usize;
                    prop_assert!(minute_full || hour_full, "call {} waited without need", i);
                }
            }
        }
    }
}

/// `wait_for_room` returns when a call could go at once, and takes no slot: apply reads an
/// incident then, right before its PATCH, instead of a minute of pacing earlier.
#[tokio::test(start_paused = true)]
async fn wait_for_room_returns_when_a_call_could_go_and_takes_no_slot() {
    let throttle = Throttle::new(Limits::from_quota(50, 1500));
    let start = Instant::now();
    for _ in 0..50 {
        throttle.acquire(CallKind::Patch).await;
    }
    assert_eq!(Instant::now() - start, Duration::ZERO);
    // Other kinds have their own minute quota.
    throttle.wait_for_room(CallKind::Get).await;
    assert_eq!(Instant::now() - start, Duration::ZERO);
    throttle.wait_for_room(CallKind::Patch).await;
    assert_eq!(Instant::now() - start, PACED_MINUTE);
    // Waiting again, or twice at once, still finds the room: nothing was taken.
    throttle.wait_for_room(CallKind::Patch).await;
    tokio::join!(
        throttle.wait_for_room(CallKind::Patch),
        throttle.wait_for_room(CallKind::Patch)
    );
    assert_eq!(Instant::now() - start, PACED_MINUTE);
    assert_eq!(throttle.acquire(CallKind::Patch).await, Duration::ZERO);
    // A pause (a 429's Retry-After) holds it back too.
    throttle.pause_for(Duration::from_secs(7));
    throttle.wait_for_room(CallKind::Patch).await;
    assert_eq!(
        Instant::now() - start,
        PACED_MINUTE + Duration::from_secs(7)
    );
}

/// A reservation holds its slot from the moment it is taken, counts from the moment it is
/// stamped (the call leaves), and gives the slot back when dropped unused.
#[tokio::test(start_paused = true)]
async fn a_reservation_holds_a_slot_and_counts_from_its_stamp() {
    let throttle = Throttle::new(Limits::from_quota(2, 1500));
    let start = Instant::now();
    let held = throttle.try_reserve(CallKind::Patch).expect("room");
    assert_eq!(throttle.acquire(CallKind::Patch).await, Duration::ZERO);
    assert!(
        throttle.try_reserve(CallKind::Patch).is_none(),
        "1 sent + 1 held = 2"
    );
    drop(held);
    let held = throttle.try_reserve(CallKind::Patch).expect("given back");

    // Sent 30 s after it was taken: its minute runs from then.
    tokio::time::advance(Duration::from_secs(30)).await;
    held.stamp();
    throttle.acquire(CallKind::Patch).await; // the first call's slot freed at 61 s
    assert_eq!(Instant::now() - start, PACED_MINUTE);
    throttle.acquire(CallKind::Patch).await;
    assert_eq!(
        Instant::now() - start,
        Duration::from_secs(30) + PACED_MINUTE,
        "the stamped slot frees 61 s after the stamp, not after the reservation"
    );
}

/// Reserved slots count in the shared hour too: a GET cannot take the hour's last slot while
/// a PATCH holds it.
#[tokio::test(start_paused = true)]
async fn reserved_slots_count_in_the_hour() {
    let throttle = Throttle::new(Limits::from_quota(50, 2));
    let start = Instant::now();
    throttle.acquire(CallKind::Get).await;
    let held = throttle.try_reserve(CallKind::Patch).expect("room");
    assert!(throttle.try_reserve(CallKind::Get).is_none());
    drop(held);
    throttle.acquire(CallKind::Get).await;
    assert_eq!(Instant::now() - start, Duration::ZERO);
}

/// A reservation given back wakes the calls that were waiting for its slot: they do not sleep
/// out the minute they had counted it for.
#[tokio::test(start_paused = true)]
async fn a_reservation_given_back_wakes_the_waiters() {
    let throttle = Throttle::new(Limits::from_quota(1, 1500));
    let start = Instant::now();
    let held = throttle.try_reserve(CallKind::Patch).expect("room");
    let waiter = tokio::spawn({
        let throttle = throttle.clone();
        async move {
            throttle.acquire(CallKind::Patch).await;
            Instant::now()
        }
    });
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(held);
    assert_eq!(waiter.await.unwrap() - start, Duration::from_secs(5));
}
