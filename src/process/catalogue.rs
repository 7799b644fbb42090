//! The files a responder reads first, by path, and the format each is
//! parsed as. `--profile quick` looks only where these can be; `full`
//! matches them on the whole walk.

use crate::timeline::parse::Format;

/// One kind of file: path patterns (components; `*` matches within one
/// component, `**` any number of components) and how it is read.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    pub patterns: &'static [&'static str],
    /// `None`: kept as evidence, not parsed (the `$MFT`, whose entries the
    /// file-system timeline already lists).
    pub format: Option<Format>,
}

pub const ITEMS: &[Item] = &[
    Item {
        patterns: &[
            "/var/log/auth.log*",
            "/var/log/secure*",
            "/var/log/syslog*",
            "/var/log/messages*",
        ],
        format: Some(Format::Syslog),
    },
    Item {
        patterns: &[
            "/var/log/journal/*/*.journal",
            "/var/log/journal/*/*.journal~",
        ],
        format: Some(Format::Journal),
    },
    Item {
        patterns: &["/var/log/wtmp*", "/var/run/utmp", "/run/utmp"],
        format: Some(Format::Utmp),
    },
    Item {
        patterns: &["/var/log/btmp*"],
        format: Some(Format::Btmp),
    },
    Item {
        patterns: &["/var/log/lastlog"],
        format: Some(Format::Lastlog),
    },
    Item {
        patterns: &[
            "/root/.bash_history",
            "/root/.zsh_history",
            "/root/.zhistory",
            "/home/*/.bash_history",
            "/home/*/.zsh_history",
            "/home/*/.zhistory",
        ],
        format: Some(Format::ShellHistory),
    },
    Item {
        patterns: &[
            "/etc/crontab",
            "/etc/cron.d/*",
            "/var/spool/cron/*",
            "/var/spool/cron/crontabs/*",
        ],
        format: Some(Format::Crontab),
    },
    Item {
        patterns: &[
            "/etc/systemd/system/*.service",
            "/etc/systemd/system/*.timer",
            "/etc/systemd/system/*/*.service",
            "/etc/systemd/system/*/*.timer",
            "/home/*/.config/systemd/user/*.service",
            "/home/*/.config/systemd/user/*.timer",
            "/root/.config/systemd/user/*.service",
            "/root/.config/systemd/user/*.timer",
        ],
        format: Some(Format::SystemdUnit),
    },
    Item {
        patterns: &[
            "/root/.ssh/authorized_keys*",
            "/home/*/.ssh/authorized_keys*",
        ],
        format: Some(Format::AuthorizedKeys),
    },
    Item {
        patterns: &["/etc/passwd"],
        format: Some(Format::Passwd),
    },
    Item {
        patterns: &["/etc/group"],
        format: Some(Format::Group),
    },
    Item {
        patterns: &["/etc/sudoers", "/etc/sudoers.d/*"],
        format: Some(Format::Sudoers),
    },
    Item {
        patterns: &["/var/log/dpkg.log*"],
        format: Some(Format::Dpkg),
    },
    Item {
        patterns: &[
            "/var/log/dnf.rpm.log*",
            "/var/log/dnf.log*",
            "/var/log/yum.log*",
        ],
        format: Some(Format::Dnf),
    },
    Item {
        patterns: &[
            "/var/log/cloud-init.log*",
            "/var/log/cloud-init-output.log*",
        ],
        format: Some(Format::CloudInit),
    },
    Item {
        patterns: &["/Windows/System32/winevt/Logs/*.evtx"],
        format: Some(Format::Evtx),
    },
    Item {
        patterns: &["/$MFT"],
        format: None,
    },
];

/// Whether one path component matches one pattern component (`*` any run).
fn component(pattern: &[u8], name: &[u8], fold: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Iterative glob with one star backtrack point: linear, no recursion.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match (pattern.get(p), name.get(n)) {
            (Some(b'*'), _) => {
                star = Some((p, n));
                p += 1;
            }
            (Some(&pc), Some(&nc)) if eq(pc, nc) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&c| c == b'*')
}

fn split(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect()
}

/// Every pattern split into components once, with its item: the full
/// walk asks of every file, and splitting the patterns each time was most
/// of what asking cost.
type Split = Vec<(Vec<&'static [u8]>, &'static Item)>;

static SPLIT: std::sync::LazyLock<Split> = std::sync::LazyLock::new(|| {
    ITEMS
        .iter()
        .flat_map(|i| i.patterns.iter().map(move |p| (split(p.as_bytes()), i)))
        .collect()
});

fn all_match(pattern: &[&[u8]], path: &[&[u8]], fold: bool) -> bool {
    pattern.iter().zip(path).all(|(p, n)| component(p, n, fold))
}

/// Matches a whole path. `fold`: compare ASCII letters without case (NTFS, FAT).
pub fn matches(pattern: &str, path: &[u8], fold: bool) -> bool {
    let p = split(pattern.as_bytes());
    let n = split(path);
    p.len() == n.len() && all_match(&p, &n, fold)
}

/// Whether a directory at `path` may hold a match: its components are a
/// prefix of some pattern's.
pub fn may_hold(path: &[u8], fold: bool) -> bool {
    let n = split(path);
    SPLIT
        .iter()
        .any(|(p, _)| p.len() > n.len() && all_match(p, &n, fold))
}

/// The item a file at `path` is, if any.
pub fn item_for(path: &[u8], fold: bool) -> Option<&'static Item> {
    let n = split(path);
    SPLIT
        .iter()
        .find(|(p, _)| p.len() == n.len() && all_match(p, &n, fold))
        .map(|(_, i)| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_components_and_rotations() {
        assert!(matches(
            "/var/log/auth.log*",
            b"/var/log/auth.log.2.gz",
            false
        ));
        assert!(matches(
            "/home/*/.bash_history",
            b"/home/alice/.bash_history",
            false
        ));
        assert!(!matches(
            "/home/*/.bash_history",
            b"/home/a/b/.bash_history",
            false
        ));
        assert!(!matches("/var/log/auth.log*", b"/var/log/xauth.log", false));
        assert!(matches(
            "/Windows/System32/winevt/Logs/*.evtx",
            b"/WINDOWS/system32/winevt/logs/Security.evtx",
            true
        ));
        assert!(!matches(
            "/Windows/System32/winevt/Logs/*.evtx",
            b"/WINDOWS/system32/winevt/logs/Security.evtx",
            false
        ));
        assert!(component(b"*a*b*c", b"xaxxbyyc", false));
        assert!(!component(b"*a*b*c", b"xaxxbyy", false));
    }

    #[test]
    fn only_directories_on_the_way_to_a_pattern_are_entered() {
        assert!(may_hold(b"/", false));
        assert!(may_hold(b"/var", false));
        assert!(may_hold(b"/var/log", false));
        assert!(may_hold(b"/home/bob/.ssh", false));
        assert!(!may_hold(b"/usr", false));
        assert!(!may_hold(b"/var/lib", false));
        assert_eq!(
            item_for(b"/etc/passwd", false).and_then(|i| i.format),
            Some(Format::Passwd)
        );
        assert!(item_for(b"/etc/shadow", false).is_none());
    }
}
