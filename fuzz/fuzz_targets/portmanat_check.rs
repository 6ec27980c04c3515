//! Portmanat `/check` answers, as the poller reads them: never a panic, and
//! a status is always about the payment asked, names it, and carries an
//! amount in manat.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use paysettle_core::portmanat::{CURRENCY, CheckAnswer, CheckContext, parse_check};
use paysettle_core::{Account, ProviderTxnId, Reference};

fuzz_target!(|data: &[u8]| {
    let account = Account::default();
    let reference = Reference::parse("ORDER-42").unwrap();
    let psp_rrn = ProviderTxnId::parse("1471851442-lfI7yG").unwrap();
    let context = CheckContext {
        account: &account,
        reference: &reference,
        psp_rrn: &psp_rrn,
        psp_rrn_known: true,
    };
    if let Ok(CheckAnswer::Status(observation)) = parse_check(data, context, Timestamp::UNIX_EPOCH)
    {
        assert_eq!(observation.reference, reference);
        assert_eq!(observation.provider_txn_id.as_ref(), Some(&psp_rrn));
        let money = observation.money.expect("an OK answer always carries an amount");
        assert_eq!(money.currency(), CURRENCY);
    }
});
