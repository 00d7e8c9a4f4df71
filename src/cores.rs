//! Work split over all cores: a slice cut into one contiguous share per
//! core (so each thread walks its part in order, e.g. reads a file
//! sequentially), each share mapped on a scoped thread, the results in
//! share order. Used where the items are independent and about equally
//! costly (the root image's digest, probing host files before the layout,
//! inspecting host paths for the tree);
//! the image copy, whose files differ wildly in size, takes jobs from a
//! queue instead (`crate::image::ext2`). And one job beside another
//! ([`alongside`]): a serial stretch with a core to spare.

/// `work` applied to contiguous shares of `items`, one per core, on scoped
/// threads; each share with its result, in order, `None` where the thread
/// panicked (the caller decides what that means).
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
        let handles: Vec<_> = items.chunks(share).map(|part| (part, s.spawn(move || work(part)))).collect();
        handles.into_iter().map(|(part, h)| (part, h.join().ok())).collect()
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
        let started = std::thread::Builder::new().spawn_scoped(s, background);
        let b = foreground();
        let a = started.ok().and_then(|thread| thread.join().ok()).unwrap_or_else(background);
        (a, b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
