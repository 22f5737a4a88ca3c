//! Choosing a pool member: the best (lowest) priority group with an available member, then smooth
//! weighted round-robin (nginx's algorithm) or a uniform random pick inside it.

use super::health::BackendState;
use crate::config::Strategy;

/// One member as the picker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Lower wins.
    pub priority: u32,
    /// Share inside its group.
    pub weight: u32,
    /// Its backend's shared health.
    pub state: &'a BackendState,
}

/// Per-worker smooth weighted round-robin state of one pool ("current weight" per member).
#[derive(Debug, Clone, Default)]
pub struct WrrState {
    current: Vec<i64>,
}

/// The outcome of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picked {
    /// Send to the member at this index.
    Member(usize),
    /// Nothing can be tried now; the first member comes back at this time (ms), if known.
    Nothing {
        /// Earliest time any non-excluded member becomes available.
        retry_at: Option<u64>,
    },
}

/// Pick a member at `now` (ms). `excluded(i)` removes members already tried by this request.
/// The chosen member has been acquired ([`BackendState::try_acquire`]): for a breaker due for
/// its probe, this caller is the one probe.
pub fn pick(
    members: &[Candidate<'_>],
    strategy: Strategy,
    wrr: &mut WrrState,
    excluded: impl Fn(usize) -> bool,
    now: u64,
    mut rand01: impl FnMut() -> f64,
) -> Picked {
    if wrr.current.len() != members.len() {
        wrr.current = vec![0; members.len()];
    }
    // Members that lost a race for a half-open probe this call (a u64 bitmask: config caps
    // pools at 64 members, `config::MAX_MEMBERS`).
    let mut lost: u64 = 0;
    for _ in 0..members.len() {
        let usable = |i: usize, c: &Candidate<'_>| {
            !excluded(i) && (i >= 64 || lost & (1 << i) == 0) && c.state.available(now)
        };
        let Some(best) = members
            .iter()
            .enumerate()
            .filter(|(i, c)| usable(*i, c))
            .map(|(_, c)| c.priority)
            .min()
        else {
            break;
        };
        let group = || {
            members
                .iter()
                .enumerate()
                .filter(move |(i, c)| c.priority == best && usable(*i, c))
        };
        let chosen = match strategy {
            Strategy::Weighted => {
                let mut total = 0i64;
                let mut top: Option<usize> = None;
                for (i, c) in group() {
                    let w = i64::from(c.weight.max(1));
                    wrr.current[i] += w;
                    total += w;
                    if top.is_none_or(|t| wrr.current[i] > wrr.current[t]) {
                        top = Some(i);
                    }
                }
                let Some(t) = top else { break };
                wrr.current[t] -= total;
                t
            }
            Strategy::Random => {
                let n = group().count();
                let k = ((rand01() * n as f64) as usize).min(n.saturating_sub(1));
                match group().nth(k) {
                    Some((i, _)) => i,
                    None => break,
                }
            }
        };
        if members[chosen].state.try_acquire(now) {
            return Picked::Member(chosen);
        }
        if chosen < 64 {
            lost |= 1 << chosen;
        }
    }
    let retry_at = members
        .iter()
        .enumerate()
        .filter(|(i, _)| !excluded(*i))
        .map(|(_, c)| c.state.available_at(now))
        .min();
    Picked::Nothing { retry_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        states: &[BackendState],
        prio: &[u32],
        weights: &[u32],
        n: usize,
        now: u64,
    ) -> Vec<usize> {
        let members: Vec<Candidate<'_>> = states
            .iter()
            .zip(prio.iter().zip(weights))
            .map(|(s, (&p, &w))| Candidate {
                priority: p,
                weight: w,
                state: s,
            })
            .collect();
        let mut wrr = WrrState::default();
        let mut counts = vec![0; states.len()];
        for _ in 0..n {
            if let Picked::Member(i) = pick(
                &members,
                Strategy::Weighted,
                &mut wrr,
                |_| false,
                now,
                || 0.5,
            ) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn smooth_weighted_split_is_exact() {
        let s: Vec<BackendState> = (0..3).map(|_| BackendState::default()).collect();
        assert_eq!(
            run(&s, &[1, 1, 1], &[80, 10, 10], 1000, 0),
            vec![800, 100, 100]
        );
        assert_eq!(run(&s, &[1, 1, 1], &[1, 1, 1], 999, 0), vec![333, 333, 333]);
    }

    #[test]
    fn lower_priority_only_when_better_group_is_benched() {
        let s: Vec<BackendState> = (0..3).map(|_| BackendState::default()).collect();
        assert_eq!(run(&s, &[1, 1, 2], &[1, 1, 1], 10, 0), vec![5, 5, 0]);
        s[0].bench(0, 1000);
        assert_eq!(run(&s, &[1, 1, 2], &[1, 1, 1], 10, 0), vec![0, 10, 0]);
        s[1].bench(0, 2000);
        assert_eq!(run(&s, &[1, 1, 2], &[1, 1, 1], 10, 0), vec![0, 0, 10]);
        assert_eq!(run(&s, &[1, 1, 2], &[1, 1, 1], 10, 1000), vec![10, 0, 0]);
    }

    #[test]
    fn nothing_reports_earliest_return_and_respects_exclusions() {
        let s: Vec<BackendState> = (0..2).map(|_| BackendState::default()).collect();
        s[0].bench(0, 3000);
        s[1].bench(0, 2000);
        let m: Vec<Candidate<'_>> = s
            .iter()
            .map(|st| Candidate {
                priority: 1,
                weight: 1,
                state: st,
            })
            .collect();
        let mut wrr = WrrState::default();
        assert_eq!(
            pick(&m, Strategy::Weighted, &mut wrr, |_| false, 0, || 0.0),
            Picked::Nothing {
                retry_at: Some(2000)
            }
        );
        assert_eq!(
            pick(&m, Strategy::Weighted, &mut wrr, |i| i == 1, 2500, || 0.0),
            Picked::Nothing {
                retry_at: Some(3000)
            }
        );
        assert_eq!(
            pick(&m, Strategy::Random, &mut wrr, |i| i == 0, 2500, || 0.99),
            Picked::Member(1)
        );
    }
}
