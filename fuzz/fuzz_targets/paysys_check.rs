//! PaySys `check_payment` answers, as the poller reads them: never a panic,
//! and an answer taken as a status is always about the payment asked.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use paysettle_core::paysys::{CheckAnswer, CheckContext, Rules, parse_check_payment};
use paysettle_core::{Account, Reference};

fuzz_target!(|data: &[u8]| {
    let account = Account::default();
    let reference = Reference::parse("ORDER-42").unwrap();
    let rules = Rules::default();
    let context = CheckContext {
        account: &account,
        reference: &reference,
        rules: &rules,
    };
    if let Ok(CheckAnswer::Status { observation, .. }) =
        parse_check_payment(data, context, Timestamp::UNIX_EPOCH)
    {
        assert_eq!(observation.reference, reference);
        assert_eq!(observation.account, account);
        assert!(
            observation.money.is_none(),
            "a check answer carries no amount"
        );
    }
});
