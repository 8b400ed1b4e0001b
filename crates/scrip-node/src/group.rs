//! Group commit across handler threads.
//!
//! A durable step costs one fsync, and an fsync costs about as much for one
//! step as for a thousand. So requests that arrive while a group is being
//! committed wait in a queue, and the next thread to find the store free
//! answers all of them as one group ([`scrip_core::Broker::answer_group`],
//! [`scrip_core::Merchant::answer_group`]). Nobody waits on a timer: a lone
//! request is answered at once, and under load groups grow by themselves.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Mutex, MutexGuard};

/// The most requests one group answers; later ones wait for the next group,
/// so the first request of a group never waits behind an unbounded one.
pub const MAX_GROUP: usize = 512;

/// A store, and the requests waiting for it to answer them as a group.
pub struct Grouped<S, Q, A> {
    store: Mutex<S>,
    waiting: Mutex<Vec<(Q, SyncSender<A>)>>,
}

impl<S, Q, A> Grouped<S, Q, A> {
    pub fn new(store: S) -> Self {
        Grouped {
            store: Mutex::new(store),
            waiting: Mutex::new(Vec::new()),
        }
    }

    /// The store, for work that is not grouped: reads, forwarding payment records.
    pub fn store(&self) -> MutexGuard<'_, S> {
        // A step that panicked rolled its transaction back: the store is sound.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `request` and waits for its answer, which this thread or
    /// another computes with `answer_group`: given the store and a group of
    /// requests, it returns one answer per request, in order. `lost` answers
    /// a request whose group failed without an answer for it (a panic).
    pub fn submit(
        &self,
        request: Q,
        answer_group: impl Fn(&mut S, Vec<Q>) -> Vec<A>,
        lost: impl Fn() -> A,
    ) -> A {
        let (sender, receiver) = sync_channel(1);
        self.queue().push((request, sender));
        loop {
            if let Some(answer) = answered(&receiver, &lost) {
                return answer;
            }
            let mut store = self.store();
            // The group before ours may have answered us while we waited.
            if let Some(answer) = answered(&receiver, &lost) {
                return answer;
            }
            // Unanswered requests stay queued until a thread holding the
            // store takes them, so ours is in this group or a later one.
            let group = {
                let mut queue = self.queue();
                let take = queue.len().min(MAX_GROUP);
                queue.drain(..take).collect::<Vec<_>>()
            };
            let (requests, senders): (Vec<Q>, Vec<SyncSender<A>>) = group.into_iter().unzip();
            if requests.is_empty() {
                continue;
            }
            let answers = answer_group(&mut store, requests);
            // The group is committed and nothing of it answered: where the
            // crash tests' fault hook, when set, ends the process.
            crate::fault::group_committed();
            // Answer before letting go of the store, so that a thread that
            // takes it next finds its answer rather than an empty queue.
            for (sender, answer) in senders.into_iter().zip(answers) {
                // A receiver is gone only if its thread died; nobody waits for it.
                let _ = sender.send(answer);
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, Vec<(Q, SyncSender<A>)>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The answer to our request, if its group is done.
fn answered<A>(receiver: &Receiver<A>, lost: impl Fn() -> A) -> Option<A> {
    match receiver.try_recv() {
        Ok(answer) => Some(answer),
        Err(TryRecvError::Empty) => None,
        // Our group's thread dropped our sender without an answer.
        Err(TryRecvError::Disconnected) => Some(lost()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn every_request_gets_its_own_answer_and_groups_form_under_load() {
        const THREADS: usize = 16;
        const EACH: usize = 200;
        let grouped = Arc::new(Grouped::new(Vec::<usize>::new()));
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let grouped = Arc::clone(&grouped);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let request = thread * EACH + i;
                        let answer = grouped.submit(
                            request,
                            |sizes, group| {
                                sizes.push(group.len());
                                // Slow enough for others to queue up behind us.
                                std::thread::sleep(std::time::Duration::from_micros(50));
                                group.into_iter().map(|q| q * 2).collect()
                            },
                            || usize::MAX,
                        );
                        assert_eq!(answer, request * 2);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let sizes = grouped.store();
        assert_eq!(sizes.iter().sum::<usize>(), THREADS * EACH);
        assert!(
            sizes.len() < THREADS * EACH,
            "no group ever held more than one request"
        );
        assert!(sizes.iter().all(|&size| (1..=MAX_GROUP).contains(&size)));
    }

    #[test]
    fn a_group_that_drops_answers_reports_them_lost() {
        let grouped = Grouped::new(());
        let answer = grouped.submit(7, |_, _| Vec::<u32>::new(), || 0);
        assert_eq!(answer, 0);
    }
}
