//! Who owns a bus name we take facts from. OpenBMC's bus policy lets any local user own any
//! name (`org.openbmc.conf`: `<allow own="*"/>`), so a well-known name alone proves nothing:
//! the owner's Unix user must be one we trust (root unless configured otherwise).

use zbus::fdo::DBusProxy;
use zbus::names::{BusName, UniqueName};

/// The Unix users whose services we believe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedUsers(Vec<u32>);

impl TrustedUsers {
    /// These user ids.
    pub fn new(uids: impl IntoIterator<Item = u32>) -> Self {
        TrustedUsers(uids.into_iter().collect())
    }

    /// Root only.
    pub fn root() -> Self {
        TrustedUsers(vec![0])
    }

    /// True for a trusted user id.
    pub fn contains(&self, uid: u32) -> bool {
        self.0.contains(&uid)
    }
}

/// A bus name owned by someone we do not trust.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// The owner runs as another user.
    #[error("{name} is owned by {owner}, running as uid {uid}, which is not a trusted user")]
    User {
        /// The well-known name.
        name: String,
        /// Its owner.
        owner: String,
        /// The owner's Unix user.
        uid: u32,
    },
    /// The bus could not say.
    #[error("cannot ask the bus who owns {name}")]
    Bus {
        /// The well-known name.
        name: String,
        /// Why.
        #[source]
        source: zbus::fdo::Error,
    },
}

/// Checks that `owner` (the current owner of `name`) runs as a trusted user.
///
/// # Errors
/// [`Untrusted`].
pub async fn check(
    dbus: &DBusProxy<'_>,
    name: &str,
    owner: &UniqueName<'_>,
    trusted: &TrustedUsers,
) -> Result<(), Untrusted> {
    let uid = dbus
        .get_connection_unix_user(BusName::Unique(owner.clone()))
        .await
        .map_err(|source| Untrusted::Bus {
            name: name.to_owned(),
            source,
        })?;
    if trusted.contains(uid) {
        Ok(())
    } else {
        Err(Untrusted::User {
            name: name.to_owned(),
            owner: owner.to_string(),
            uid,
        })
    }
}
