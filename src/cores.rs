//! Work split over all cores: a slice cut into one contiguous share per
//! core (so each thread walks its part in order, e.g. reads a file
//! sequentially), each share mapped on a scoped thread, the results in
//! share order. Used where the items are independent and about equally
//! costly (the root image's digest, probing host files before the layout,
//! inspecting host paths for the tree);
//! the image copy, whose files differ wildly in size, takes jobs from a
//! queue instead (`crate::image::ext2`). And one job beside another
//! ([`alongside`]): a serial stretch with a core to spare.
//!
//! Threads are a speed-up, never a requirement: where none can be started
//! (a process at its thread limit, `ulimit -u` or a cgroup's `pids.max`)
//! [`try_spawn`] says so instead of panicking as `Scope::spawn` does, and
//! the work is done on the calling thread.

use std::thread::{Scope, ScopedJoinHandle};

/// `job` on a scoped thread of its own, or `None` where no thread can be
/// started (EAGAIN: the thread limit, or no memory for a stack); the
/// caller then does the job itself.
pub(crate) fn try_spawn<'scope, T, F>(
    s: &'scope Scope<'scope, '_>,
    job: F,
) -> Option<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    #[cfg(test)]
    if tests::NO_THREADS.with(std::cell::Cell::get) {
        return None;
    }
    std::thread::Builder::new().spawn_scoped(s, job).ok()
}

/// The result of a job [`try_spawn`] started: its thread's (`Err` if it
/// panicked), or `job` run here where no thread was started.
pub(crate) fn join_or_run<T>(
    started: Option<ScopedJoinHandle<'_, T>>,
    job: impl FnOnce() -> T,
) -> std::thread::Result<T> {
    match started {
        Some(thread) => thread.join(),
        None => Ok(job()),
    }
}

/// `work` applied to contiguous shares of `items`, one per core, on scoped
/// threads (here for a share no thread could be started for); each share
/// with its result, in order, `None` where the thread panicked (the caller
/// decides what that means).
pub(crate) fn map_shares<T, R, F>(items: &[T], work: F) -> Vec<(&[T], Option<R>)>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> R + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let work = &work;
        let started: Vec<_> =
            items.chunks(share).map(|part| (part, try_spawn(s, move || work(part)))).collect();
        started.into_iter().map(|(part, thread)| (part, join_or_run(thread, || work(part)).ok())).collect()
    })
}

/// `work` applied to each of `items` on all cores ([`map_shares`]), the
/// results in item order; a share whose thread panicked is worked again
/// here, one item at a time.
pub(crate) fn map_each<T, R, F>(items: &[T], work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    map_shares(items, |part| part.iter().map(&work).collect::<Vec<_>>())
        .into_iter()
        .flat_map(|(part, results)| results.unwrap_or_else(|| part.iter().map(&work).collect()))
        .collect()
}

/// `background` on a scoped thread of its own while `foreground` runs on
/// this one; both results. Where no thread can be started (a process at its
/// thread or memory limit) or the thread panicked, `background` runs here
/// after `foreground`: the same result, later, and never a lost one.
pub(crate) fn alongside<A, B>(background: impl Fn() -> A + Sync, foreground: impl FnOnce() -> B) -> (A, B)
where
    A: Send,
{
    std::thread::scope(|s| {
        let background = &background;
        let started = try_spawn(s, background);
        let b = foreground();
        let a = join_or_run(started, background).unwrap_or_else(|_| background());
        (a, b)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Set by [`without_threads`]: [`try_spawn`] on this thread starts
        /// none, as at a thread limit.
        pub(crate) static NO_THREADS: Cell<bool> = const { Cell::new(false) };
    }

    /// `f` on this thread as if no thread could be started.
    pub(crate) fn without_threads<R>(f: impl FnOnce() -> R) -> R {
        NO_THREADS.with(|n| n.set(true));
        let r = f();
        NO_THREADS.with(|n| n.set(false));
        r
    }

    #[test]
    fn without_threads_every_job_is_done_here_with_the_same_results() {
        let items: Vec<u32> = (0..1001).collect();
        let main = std::thread::current().id();
        let here = |x: &u32| (u64::from(*x) * 2, std::thread::current().id() == main);
        let out = without_threads(|| map_each(&items, here));
        assert_eq!(out, (0..1001).map(|x| (x * 2, true)).collect::<Vec<_>>());
        let shares = without_threads(|| map_shares(&items, |p| p.len()));
        assert_eq!(shares.iter().map(|(_, r)| r.unwrap()).sum::<usize>(), 1001);
        let (a, b) = without_threads(|| alongside(|| std::thread::current().id(), || 7));
        assert_eq!((a, b), (main, 7));
    }

    #[test]
    fn shares_cover_the_items_in_order_and_a_panic_is_none() {
        let items: Vec<u32> = (0..1001).collect();
        let out = map_shares(&items, |part| part.iter().map(|x| u64::from(*x) * 2).collect::<Vec<_>>());
        let flat: Vec<u64> = out.iter().flat_map(|(_, r)| r.clone().unwrap()).collect();
        assert_eq!(flat, (0..1001).map(|x| x * 2).collect::<Vec<u64>>());
        assert!(map_shares(&[] as &[u32], |p| p.len()).iter().all(|(p, _)| p.is_empty()));
        let out = map_shares(&items, |part| {
            if part.contains(&0) {
                panic!("share with 0");
            }
            part.len()
        });
        assert!(out[0].1.is_none());
        assert_eq!(out[0].0[0], 0);
    }

    #[test]
    fn each_item_is_mapped_in_order_and_a_panicked_share_is_mapped_again() {
        let items: Vec<u32> = (0..1001).collect();
        assert_eq!(map_each(&items, |x| u64::from(*x) * 2), (0..1001).map(|x| x * 2).collect::<Vec<u64>>());
        // Item 0 panics on a share's thread only: the calling thread maps
        // that share again.
        let main = std::thread::current().id();
        let out = map_each(&items, |x| {
            if *x == 0 && std::thread::current().id() != main {
                panic!("item 0 on a worker");
            }
            *x
        });
        assert_eq!(out, items);
    }

    #[test]
    fn alongside_gives_both_results_and_a_panicked_background_runs_here() {
        let (a, b) = alongside(|| (1..=100u32).sum::<u32>(), || "here");
        assert_eq!((a, b), (5050, "here"));
        // The background job panics on its own thread only: this thread
        // runs it again after the foreground.
        let main = std::thread::current().id();
        let (a, b) = alongside(
            || {
                if std::thread::current().id() != main {
                    panic!("background on its thread");
                }
                std::thread::current().id()
            },
            || 7,
        );
        assert_eq!((a, b), (main, 7));
    }
}
