//! A test double of phosphor-logging's `xyz.openbmc_project.Logging` service, for a test's
//! private bus: the bus name, the object `/xyz/openbmc_project/logging` and the interface
//! `xyz.openbmc_project.Logging.Create` exactly as phosphor-dbus-interfaces'
//! `Logging/Create.interface.yaml` defines them (`Create(ssa{ss}) → o`,
//! `CreateWithFFDCFiles(ssa{ss}a(syyh))`; the introspection test compares it with the
//! upstream YAML). It records every entry asked for and answers with an entry path as
//! phosphor-logging does (`/xyz/openbmc_project/logging/entry/<n>`), without serving the
//! entries. A severity that is not an `xyz.openbmc_project.Logging.Entry.Level` value is
//! refused as sdbusplus refuses a bad enumeration string.

// The method arguments carry upstream's names (introspection shows them).
#![allow(non_snake_case)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::zvariant::{OwnedFd, OwnedObjectPath};

/// The bus name.
pub const SERVICE: &str = "xyz.openbmc_project.Logging";
/// The object.
pub const PATH: &str = "/xyz/openbmc_project/logging";
/// The interface.
pub const INTERFACE: &str = "xyz.openbmc_project.Logging.Create";

const LEVELS: [&str; 8] = [
    "Emergency",
    "Alert",
    "Critical",
    "Error",
    "Warning",
    "Notice",
    "Informational",
    "Debug",
];

/// One `Create` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `Message`.
    pub message: String,
    /// `Severity` (`xyz.openbmc_project.Logging.Entry.Level.<Level>`).
    pub severity: String,
    /// `AdditionalData`.
    pub additional_data: HashMap<String, String>,
}

/// What the double was asked for.
#[derive(Clone, Debug, Default)]
pub struct Entries(Arc<Mutex<Vec<Entry>>>);

impl Entries {
    /// Every entry so far.
    pub fn all(&self) -> Vec<Entry> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// The double's D-Bus object.
struct Create {
    entries: Entries,
}

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "xyz.openbmc_project.sdbusplus.Error")]
enum SdbusplusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// sdbusplus's error for a string that is not a value of the enumeration.
    InvalidEnumString(String),
}

impl Create {
    fn record(
        &self,
        message: String,
        severity: String,
        additional_data: HashMap<String, String>,
    ) -> Result<OwnedObjectPath, SdbusplusError> {
        let valid = severity
            .strip_prefix("xyz.openbmc_project.Logging.Entry.Level.")
            .is_some_and(|l| LEVELS.contains(&l));
        if !valid {
            return Err(SdbusplusError::InvalidEnumString(severity));
        }
        let mut entries = self
            .entries
            .0
            .lock()
            .map_err(|_| SdbusplusError::InvalidEnumString("poisoned".into()))?;
        entries.push(Entry {
            message,
            severity,
            additional_data,
        });
        let path = format!("{PATH}/entry/{}", entries.len());
        OwnedObjectPath::try_from(path).map_err(|e| SdbusplusError::ZBus(e.into()))
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Logging.Create")]
impl Create {
    #[zbus(name = "Create", out_args("Entry"))]
    fn create(
        &self,
        Message: String,
        Severity: String,
        AdditionalData: HashMap<String, String>,
    ) -> Result<OwnedObjectPath, SdbusplusError> {
        self.record(Message, Severity, AdditionalData)
    }

    #[zbus(name = "CreateWithFFDCFiles")]
    fn create_with_ffdc_files(
        &self,
        Message: String,
        Severity: String,
        AdditionalData: HashMap<String, String>,
        FFDC: Vec<(String, u8, u8, OwnedFd)>,
    ) -> Result<(), SdbusplusError> {
        drop(FFDC);
        self.record(Message, Severity, AdditionalData).map(|_| ())
    }
}

/// A running double: its connection (it lives as long as this) and what it recorded.
pub struct LoggingDouble {
    /// Its connection to the bus.
    pub conn: zbus::Connection,
    /// What it was asked for.
    pub entries: Entries,
}

impl LoggingDouble {
    /// Starts the double on the bus at `address`, owning [`SERVICE`].
    ///
    /// # Errors
    /// zbus errors (the name is taken, the bus is not there).
    pub async fn start(address: &str) -> zbus::Result<LoggingDouble> {
        let entries = Entries::default();
        let conn = zbus::connection::Builder::address(address)?
            .serve_at(
                PATH,
                Create {
                    entries: entries.clone(),
                },
            )?
            .name(SERVICE)?
            .build()
            .await?;
        Ok(LoggingDouble { conn, entries })
    }
}
