//! paysettle's core: the rules of money, payment states and the three
//! providers' protocols, with no I/O, no clock and no async. Everything here
//! takes bytes, header maps and the current time as arguments, so it is
//! tested exactly against the providers' documents and shared by the
//! receiver, the worker, reconciliation and the fuzzers.
//!
//! - [`money`]: [`Money`] in integer minor units of an ISO 4217 [`Currency`].
//! - [`ids`]: [`Provider`], [`Account`], [`Reference`], [`ProviderTxnId`], [`Source`].
//! - [`state`]: [`PaymentStatus`] and the state machine's [`apply`](state::apply).
//! - [`clock`]: the [`Clock`](clock::Clock) trait the parts above take "now" from
//!   (core itself only ever receives the time as an argument).
//! - [`decide`]: what an observation, a registration or an operator's
//!   correction does to a payment: flags, re-checks, events and schedule.
//! - [`observation`]: [`Observation`], what every callback and status answer becomes.
//! - [`verify`]: [`VerifiedCallback`] and [`VerifyError`].
//! - [`inbound`]: [`InboundCallback`](inbound::InboundCallback), the message from receiver to worker.
//! - [`portmanat`], [`paysys`], [`plutu`]: each provider's protocol.
//! - [`schedule`]: when to check a payment next.
//! - [`redact`]: removing secrets and card numbers from what is kept.
//! - [`handoff`]: signing what one part hands another ([`HandoffKeys`](handoff::HandoffKeys)).
//! - [`form`], [`json`], [`localtime`]: strict query and JSON parsing, provider
//!   local times.

mod answer;
pub mod clock;
mod crypto;
pub mod decide;
pub mod form;
pub mod handoff;
pub mod ids;
pub mod inbound;
pub mod json;
pub mod localtime;
pub mod money;
pub mod observation;
pub mod paysys;
pub mod plutu;
pub mod portmanat;
pub mod redact;
pub mod schedule;
pub mod state;
pub mod verify;

pub use answer::ParseError;
pub use ids::{Account, IdError, Provider, ProviderTxnId, Reference, Source};
pub use money::{Currency, Money, MoneyError};
pub use observation::{Observation, ProviderTime};
pub use state::{ObservedStatus, PaymentState, PaymentStatus, Transition, TransitionError};
pub use verify::{CallbackKind, VerifiedCallback, VerifyError};
