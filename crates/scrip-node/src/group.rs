//! Group commit across handler threads.
//!
//! A durable step costs one fsync, and an fsync costs about as much for one
//! step as for a thousand. So requests that arrive while a group is being
//! committed wait in a queue, and one thread at a time, the leader, answers
//! everything queued as one group ([`scrip_core::Broker::answer_prepared`],
//! [`scrip_core::Merchant::answer_group`]). Nobody waits on a timer: a lone
//! request is answered at once, and under load groups grow by themselves.
//!
//! Waiting threads sleep on their own answer, not on the store, so that a
//! leader finishing a group hands the store to the next leader at once, and
//! that leader takes everything that queued meanwhile: handler threads
//! queueing on the store's lock instead took it one by one, in groups of one
//! or two.

use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError};
use std::sync::{Mutex, MutexGuard};

/// The most requests one group answers; later ones wait for the next group,
/// so the first request of a group never waits behind an unbounded one.
pub const MAX_GROUP: usize = 512;

/// A store, and the requests waiting for it to answer them as a group.
pub struct Grouped<S, Q, A> {
    store: Mutex<S>,
    queue: Mutex<Queue<Q, A>>,
}

struct Queue<Q, A> {
    waiting: Vec<(Q, SyncSender<Turn<A>>)>,
    /// A thread is answering groups; the others wait for a [`Turn`].
    leading: bool,
}

/// What a waiting request's thread is woken with.
enum Turn<A> {
    Answer(A),
    /// Lead: answer the queue, this request's group included.
    Lead,
}

impl<S, Q, A> Grouped<S, Q, A> {
    pub fn new(store: S) -> Self {
        Grouped {
            store: Mutex::new(store),
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                leading: false,
            }),
        }
    }

    /// The store, for work that is not grouped: reads, forwarding payment records.
    pub fn store(&self) -> MutexGuard<'_, S> {
        // A group that panicked was undone (a merchant's transaction when
        // dropped, a broker's group by `store::grouped`): the store is sound.
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
        let lead = {
            let mut queue = self.queue();
            queue.waiting.push((request, sender));
            !std::mem::replace(&mut queue.leading, true)
        };
        if !lead {
            match receiver.recv() {
                Ok(Turn::Answer(answer)) => return answer,
                Ok(Turn::Lead) => {}
                Err(_) => return lost(),
            }
        }
        // Hands the lead on however this thread stops leading, a panic included.
        let _leader = Leader(self);
        loop {
            let group = {
                let mut queue = self.queue();
                let take = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let (requests, senders): (Vec<Q>, Vec<_>) = group.into_iter().unzip();
            let answers = answer_group(&mut self.store(), requests);
            // The group is committed and nothing of it answered: where the
            // crash tests' fault hook, when set, ends the process.
            crate::fault::group_committed();
            for (sender, answer) in senders.into_iter().zip(answers) {
                // A receiver is gone only if its thread died; nobody waits for it.
                let _ = sender.send(Turn::Answer(answer));
            }
            // Ours was in this group unless more than a group queued before it.
            match receiver.try_recv() {
                Ok(Turn::Answer(answer)) => return answer,
                // Still queued: lead the next group too. (Nobody sends a leader `Lead`.)
                Ok(Turn::Lead) | Err(TryRecvError::Empty) => {}
                // Our group dropped our sender without an answer.
                Err(TryRecvError::Disconnected) => return lost(),
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<Q, A>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The leader's duty when it stops: wake the oldest waiting request to lead
/// the next group, or, with nobody waiting, let the next arrival lead.
struct Leader<'a, S, Q, A>(&'a Grouped<S, Q, A>);

impl<S, Q, A> Drop for Leader<'_, S, Q, A> {
    fn drop(&mut self) {
        let mut queue = self.0.queue();
        while let Some((_, sender)) = queue.waiting.first() {
            if sender.try_send(Turn::Lead).is_ok() {
                return;
            }
            // Its thread is gone (or was already answered): nobody to lead there.
            queue.waiting.remove(0);
        }
        queue.leading = false;
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
    fn requests_that_queue_while_a_group_commits_are_answered_together() {
        // Each thread has one request in flight at a time, as a handler does.
        const THREADS: usize = 16;
        const EACH: usize = 50;
        let grouped = Arc::new(Grouped::new(Vec::<usize>::new()));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let grouped = Arc::clone(&grouped);
                std::thread::spawn(move || {
                    for request in 0..EACH {
                        grouped.submit(
                            request,
                            |sizes, group| {
                                sizes.push(group.len());
                                // A commit: long enough for every other thread to queue.
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                group
                            },
                            || usize::MAX,
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let sizes = grouped.store();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!(
            mean >= (THREADS / 4) as f64,
            "groups of {mean:.1} on average: waiting requests were not taken together"
        );
    }

    #[test]
    fn a_leader_that_panics_hands_the_lead_on() {
        let grouped = Arc::new(Grouped::new(()));
        let panicking = Arc::clone(&grouped);
        let failed = std::thread::spawn(move || {
            panicking.submit(1, |_, _| -> Vec<u32> { panic!("a step panicked") }, || 0)
        })
        .join();
        assert!(failed.is_err());
        let (done, answer) = std::sync::mpsc::channel();
        let next = Arc::clone(&grouped);
        std::thread::spawn(move || {
            let _ = done.send(next.submit(2, |_, group| group, || 0));
        });
        assert_eq!(
            answer.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(2),
            "the next request must find nobody leading, and lead"
        );
    }

    #[test]
    fn a_group_that_drops_answers_reports_them_lost() {
        let grouped = Grouped::new(());
        let answer = grouped.submit(7, |_, _| Vec::<u32>::new(), || 0);
        assert_eq!(answer, 0);
    }
}
