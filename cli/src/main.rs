//! `iotsafe`: inspect and use the IoT SAFE applet of a SIM/eSIM.
//!
//! Exit status 0 on success; 1 on failure, with one line on stderr starting with `iotsafe:`;
//! 2 for a usage mistake (clap's message).

mod card;
mod dane_commands;
mod doctor;
mod enroll;
mod registry_commands;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "iotsafe",
    version,
    about = "Use the GSMA IoT SAFE applet of a SIM/eSIM"
)]
struct Cli {
    #[command(flatten)]
    card: card::CardOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Card(card::CardCommand),
    /// Check everything from pcscd to the device's TLSA records, one line per check (ok, or
    /// the problem and what to do). Exit status 0 only when everything is fine.
    Doctor(doctor::DoctorArgs),
    /// Enrol this device in a registry: optionally generate the key pair on the card, write a
    /// certificate request signed by the card key (its name in the subjectAltName), print the
    /// TLSA record to publish (stdout) and the next steps (stderr).
    Enroll(enroll::EnrollArgs),
    /// Authenticate servers and devices by their DNSSEC-validated TLSA records.
    Dane {
        #[command(subcommand)]
        command: dane_commands::DaneCommand,
    },
    /// A registry's operations on device records: publish, revoke, rotate and show TLSA
    /// records by DNS UPDATE (RFC 2136) signed with TSIG, each change waited for until the
    /// validating resolver sees it secure.
    Registry {
        #[command(subcommand)]
        command: registry_commands::RegistryCommand,
    },
}

/// The command line, with the card options left out of the help of the `registry` commands,
/// which use no card (the options stay global, so they are still accepted there).
fn command_line() -> clap::Command {
    let mut command = Cli::command();
    command.build();
    command.mut_subcommand("registry", |registry| {
        let names: Vec<String> = registry
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        names
            .iter()
            .fold(hide_card_options(registry), |registry, name| {
                registry.mut_subcommand(name, hide_card_options)
            })
    })
}

fn hide_card_options(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| {
        let card = arg.get_help_heading() == Some(card::HELP_HEADING);
        arg.hide(card)
    })
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command_line().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let outcome = match cli.command {
        Command::Card(command) => card::run(&cli.card, command),
        Command::Doctor(args) => {
            return match doctor::run(&cli.card, &args) {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
        Command::Enroll(args) => enroll::run(&cli.card, &args),
        Command::Registry { command } => {
            return ExitCode::from(registry_commands::run(command));
        }
        Command::Dane { command } => {
            return match dane_commands::run(command) {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("iotsafe: {message}");
            ExitCode::FAILURE
        }
    }
}
