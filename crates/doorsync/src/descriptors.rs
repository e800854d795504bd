//! The process's limit on open files (RLIMIT_NOFILE). Its soft value is often far below the hard
//! one (1024 against 524288 under systemd): raised at start, it gives the connection cap room.

/// The limit in effect after [`raise`]: `None` for none at all.
#[derive(Debug, Clone, Copy)]
pub struct Descriptors {
    pub limit: Option<u64>,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft limit towards `wanted`, as far as the hard limit allows. Asking for no more
/// than is wanted keeps the limit low enough for anything that still loops over every descriptor.
/// On Linux rustix sets it with prlimit64, which the `~@resources` system-call filter of
/// deploy/doorsync.service allows (that filter kills a process calling setrlimit itself).
#[cfg(unix)]
pub fn raise(wanted: u64) -> Descriptors {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let Some(soft) = now.current else {
        return Descriptors {
            limit: None,
            raised_from: None,
        };
    };
    let target = now.maximum.map_or(wanted, |hard| hard.min(wanted));
    if target <= soft {
        return Descriptors {
            limit: Some(soft),
            raised_from: None,
        };
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Descriptors {
            limit: Some(target),
            raised_from: Some(soft),
        },
        Err(e) => {
            tracing::warn!(error = %e, soft, target, "the open-file limit could not be raised");
            Descriptors {
                limit: Some(soft),
                raised_from: None,
            }
        }
    }
}

#[cfg(not(unix))]
pub fn raise(_wanted: u64) -> Descriptors {
    Descriptors {
        limit: None,
        raised_from: None,
    }
}
