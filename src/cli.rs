//! What both daemons' command lines share, on [`lexopt`]: the outcome of parsing (run, help
//! or version), typed usage errors, value checks, and the exit that follows (help and version
//! on stdout with 0; a usage error on stderr with [`EXIT_USAGE`]).
//!
//! The command lines are small (a few options, five subcommands), so each is parsed by hand
//! on a lexer instead of a derive framework: clap took about 0.26 MiB of the binary
//! (issue 14, README "Size on flash").

use std::ffi::OsString;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

/// Exit status for bad arguments (as clap used, and as the configuration errors use).
pub const EXIT_USAGE: u8 = 2;

/// What a command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Run with these arguments.
    Run(T),
    /// Print this help text and exit 0.
    Help(&'static str),
    /// Print the version and exit 0.
    Version,
}

impl<T> Parsed<T> {
    /// The same outcome, with `f` applied to what to run with.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U> {
        match self {
            Parsed::Run(t) => Parsed::Run(f(t)),
            Parsed::Help(text) => Parsed::Help(text),
            Parsed::Version => Parsed::Version,
        }
    }
}

/// Why a command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The lexer's own: an unknown option, a missing or unexpected value.
    #[error(transparent)]
    Lexer(#[from] lexopt::Error),
    /// A value that does not parse, or is out of range.
    #[error("invalid value {value:?} for {option}: {why}")]
    BadValue {
        /// The option (or positional argument) it was given for.
        option: &'static str,
        /// The value as given.
        value: String,
        /// What was expected.
        why: String,
    },
    /// A required argument is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// Two options that exclude each other, or one that needs another.
    #[error("{0}")]
    Conflict(&'static str),
}

/// A daemon's command line: the options both daemons take, and an operator subcommand.
#[derive(Debug, PartialEq, Eq)]
pub struct DaemonLine<C> {
    /// Configuration file (JSON). A missing file means defaults.
    pub config: PathBuf,
    /// D-Bus address to use instead of the system bus.
    pub bus: Option<String>,
    /// Validate the configuration, print the result and exit (0 valid, 2 invalid).
    pub check_config: bool,
    /// The operator subcommand; none runs the daemon.
    pub command: Option<C>,
}

/// Parses a daemon's command line `args` (the program name first): `-c/--config`, `--bus`,
/// `--check-config`, `-h/--help` (prints `help`) and `-V/--version`, and at most one
/// subcommand (or `help [SUBCOMMAND]`, as clap offered). `subcommand` is called with a subcommand's name, the parser positioned after
/// it and the configuration path (which it may set); it returns `None` for a name that is
/// not one.
///
/// # Errors
/// [`UsageError`] for anything that is not this command line; nothing is run then.
pub fn parse_daemon_line<C>(
    args: impl IntoIterator<Item = OsString>,
    default_config: &str,
    help: &'static str,
    mut subcommand: impl FnMut(
        &str,
        &mut lexopt::Parser,
        &mut PathBuf,
    ) -> Result<Option<Parsed<C>>, UsageError>,
) -> Result<Parsed<DaemonLine<C>>, UsageError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut line = DaemonLine {
        config: PathBuf::from(default_config),
        bus: None,
        check_config: false,
        command: None,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Short('c') | Long("config") => line.config = parser.value()?.into(),
            Long("bus") => line.bus = Some(parse_value("--bus", parser.value()?)?),
            Long("check-config") => line.check_config = true,
            Short('h') | Long("help") => return Ok(Parsed::Help(help)),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Value(name) if line.command.is_none() && name == "help" => {
                return help_subcommand(&mut parser, help, &mut subcommand);
            }
            Value(name) if line.command.is_none() => {
                let parsed = match name.to_str() {
                    Some(text) => subcommand(text, &mut parser, &mut line.config)?,
                    None => None,
                };
                match parsed {
                    Some(Parsed::Run(command)) => line.command = Some(command),
                    Some(Parsed::Help(text)) => return Ok(Parsed::Help(text)),
                    Some(Parsed::Version) => return Ok(Parsed::Version),
                    None => return Err(Value(name).unexpected().into()),
                }
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Parsed::Run(line))
}

/// `help [COMMAND]`, the subcommand clap generated: the text `COMMAND --help` prints, or
/// `help` without a command. The subcommand's own parser is asked (given `--help`), so each
/// text is written once; one that has no text of its own (it takes no options) gets `help`.
///
/// # Errors
/// [`UsageError`] for a name that is not a subcommand, an option, or a second name.
fn help_subcommand<C>(
    parser: &mut lexopt::Parser,
    help: &'static str,
    subcommand: &mut impl FnMut(
        &str,
        &mut lexopt::Parser,
        &mut PathBuf,
    ) -> Result<Option<Parsed<C>>, UsageError>,
) -> Result<Parsed<DaemonLine<C>>, UsageError> {
    let name = match parser.next()? {
        None => return Ok(Parsed::Help(help)),
        Some(lexopt::Arg::Value(name)) => name,
        Some(other) => return Err(other.unexpected().into()),
    };
    let mut ask = lexopt::Parser::from_args(["--help"]);
    let asked = match name.to_str() {
        Some(text) => subcommand(text, &mut ask, &mut PathBuf::new())?,
        None => None,
    };
    let text = match asked {
        Some(Parsed::Help(text)) => text,
        Some(Parsed::Run(_) | Parsed::Version) => help,
        None => return Err(lexopt::Arg::Value(name).unexpected().into()),
    };
    match parser.next()? {
        None => Ok(Parsed::Help(text)),
        Some(extra) => Err(extra.unexpected().into()),
    }
}

/// Parses `value` given for `option` as a `T`.
///
/// # Errors
/// [`UsageError::BadValue`] when it is not UTF-8 or does not parse.
pub fn parse_value<T>(option: &'static str, value: OsString) -> Result<T, UsageError>
where
    T: FromStr,
    T::Err: Display,
{
    let text = value.into_string().map_err(|v| UsageError::BadValue {
        option,
        value: v.to_string_lossy().into_owned(),
        why: "not UTF-8".to_owned(),
    })?;
    text.parse().map_err(|e: T::Err| UsageError::BadValue {
        option,
        value: text.clone(),
        why: e.to_string(),
    })
}

/// Parses `value` given for `option` as a `T` within `range`.
///
/// # Errors
/// [`UsageError::BadValue`] when it does not parse or is outside `range`.
pub fn parse_in<T>(
    option: &'static str,
    value: OsString,
    range: RangeInclusive<T>,
) -> Result<T, UsageError>
where
    T: FromStr + PartialOrd + Display + Copy,
    T::Err: Display,
{
    let n: T = parse_value(option, value)?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(UsageError::BadValue {
            option,
            value: n.to_string(),
            why: format!("not in {}..={}", range.start(), range.end()),
        })
    }
}

/// Parses `value` given for `option` as one of `choices` (name, meaning).
///
/// # Errors
/// [`UsageError::BadValue`] naming the possible values.
pub fn parse_choice<T: Copy>(
    option: &'static str,
    value: OsString,
    choices: &[(&str, T)],
) -> Result<T, UsageError> {
    let text = value.to_string_lossy();
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| UsageError::BadValue {
            option,
            value: text.into_owned(),
            why: format!(
                "possible values: {}",
                choices
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// The arguments to run with; or, for help, version and usage errors, what was printed and
/// the exit code to return.
///
/// # Errors
/// The exit code when the program must not run: 0 after help or version, [`EXIT_USAGE`]
/// after a usage error.
pub fn finish<T>(program: &str, parsed: Result<Parsed<T>, UsageError>) -> Result<T, ExitCode> {
    match parsed {
        Ok(Parsed::Run(args)) => Ok(args),
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            Err(ExitCode::SUCCESS)
        }
        Ok(Parsed::Version) => {
            println!("{program} {}", env!("CARGO_PKG_VERSION"));
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{program}: error: {e}\n\nFor more information, try '--help'.");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_within_their_range_and_name_what_is_wrong() {
        assert_eq!(
            parse_in("--n", "100".into(), 100u64..=600_000).unwrap(),
            100
        );
        assert_eq!(
            parse_in("--n", "600000".into(), 100u64..=600_000).unwrap(),
            600_000
        );
        for bad in ["99", "600001", "-1", "ten", ""] {
            let e = parse_in("--n", bad.into(), 100u64..=600_000).unwrap_err();
            assert!(
                matches!(&e, UsageError::BadValue { option: "--n", .. }),
                "{bad}: {e}"
            );
        }
        let e = parse_choice("--mode", "strict".into(), &[("off", 0), ("on", 1)]).unwrap_err();
        assert!(e.to_string().contains("possible values: off, on"), "{e}");
        assert_eq!(
            parse_choice("--mode", "on".into(), &[("off", 0), ("on", 1)]).unwrap(),
            1
        );
    }

    #[test]
    fn help_and_version_exit_0_and_usage_errors_exit_2() {
        assert_eq!(finish("p", Ok(Parsed::Run(7))).unwrap(), 7);
        assert_eq!(
            finish::<()>("p", Ok(Parsed::Help("usage\n"))).unwrap_err(),
            ExitCode::SUCCESS
        );
        assert_eq!(
            finish::<()>("p", Ok(Parsed::Version)).unwrap_err(),
            ExitCode::SUCCESS
        );
        assert_eq!(
            finish::<()>("p", Err(UsageError::Missing("HOST"))).unwrap_err(),
            ExitCode::from(EXIT_USAGE)
        );
    }
}
