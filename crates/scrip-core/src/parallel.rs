//! Compute-only work spread over the machine's cores.
//!
//! The state machines stay synchronous; this only lets a step's pure work
//! (sealing, signing) for many requests use every core while the store's
//! single writer waits for none of it.

/// `f` of every item, in order, computed on up to every core. Small inputs
/// stay on the calling thread: a thread costs more than one item's work.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const MIN_PER_THREAD: usize = 4;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_order_of_the_items() {
        for len in [0, 1, 3, 4, 7, 8, 9, 100, 1001] {
            let items: Vec<usize> = (0..len).collect();
            assert_eq!(
                super::map(&items, |i| i * 3),
                items.iter().map(|i| i * 3).collect::<Vec<_>>()
            );
        }
    }
}
