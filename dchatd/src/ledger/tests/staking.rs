//! Balances and stakes: where the coins come from and where they go.

use super::*;

fn total(s: &LedgerState, id: &Identity) -> u64 {
    let k = key(id);
    s.balance(&k) + s.stake(&k, StakeRole::Validator) + s.stake(&k, StakeRole::Relay)
}

#[test]
fn stake_and_unstake_move_coins_between_balance_and_stake() {
    let mut s = fresh();
    let alice = ident(1);
    let k = key(&alice);
    register(&mut s, &alice, "alice");
    assert_eq!(
        s.balance(&k),
        1000,
        "the genesis balance is there once the key registers"
    );

    let applied = send(
        &mut s,
        &alice,
        TxKind::Stake {
            role: StakeRole::Validator,
            amount: 300,
        },
    )
    .unwrap();
    assert_eq!(
        applied.event,
        Event::Staked {
            role: StakeRole::Validator,
            amount: 300,
            balance: 700,
            stake: 300
        }
    );
    let applied = send(
        &mut s,
        &alice,
        TxKind::Stake {
            role: StakeRole::Relay,
            amount: 200,
        },
    )
    .unwrap();
    assert_eq!(
        applied.event,
        Event::Staked {
            role: StakeRole::Relay,
            amount: 200,
            balance: 500,
            stake: 200
        }
    );
    assert_eq!(
        (
            s.balance(&k),
            s.stake(&k, StakeRole::Validator),
            s.stake(&k, StakeRole::Relay)
        ),
        (500, 300, 200)
    );

    let applied = send(
        &mut s,
        &alice,
        TxKind::Unstake {
            role: StakeRole::Validator,
            amount: 100,
        },
    )
    .unwrap();
    assert_eq!(
        applied.event,
        Event::Unstaked {
            role: StakeRole::Validator,
            amount: 100,
            balance: 600,
            stake: 200
        }
    );

    // Roles are separate pots: the relay stake cannot pay a validator unstake.
    let over = TxKind::Unstake {
        role: StakeRole::Validator,
        amount: 201,
    };
    assert_eq!(
        expect_rejected(&mut s, &alice, over),
        Rejection::InsufficientStake {
            role: StakeRole::Validator,
            have: 200,
            need: 201
        }
    );
    assert_eq!(total(&s, &alice), 1000, "no coins are made or lost");

    send(
        &mut s,
        &alice,
        TxKind::Unstake {
            role: StakeRole::Validator,
            amount: 200,
        },
    )
    .unwrap();
    send(
        &mut s,
        &alice,
        TxKind::Unstake {
            role: StakeRole::Relay,
            amount: 200,
        },
    )
    .unwrap();
    assert_eq!(s.balance(&k), 1000);
    assert_eq!(
        s.stakes(StakeRole::Validator).find(|(key, _)| *key == k),
        None,
        "zero stakes are not kept"
    );
}

#[test]
fn staking_the_whole_balance_is_allowed_and_one_more_is_not() {
    let mut s = fresh();
    let alice = ident(1);
    register(&mut s, &alice, "alice");
    send(
        &mut s,
        &alice,
        TxKind::Stake {
            role: StakeRole::Relay,
            amount: 1000,
        },
    )
    .unwrap();
    assert_eq!(s.balance(&key(&alice)), 0);
    assert_eq!(
        expect_rejected(
            &mut s,
            &alice,
            TxKind::Stake {
                role: StakeRole::Relay,
                amount: 1
            }
        ),
        Rejection::InsufficientBalance { have: 0, need: 1 }
    );
}

#[test]
fn genesis_balances_need_a_registered_account_to_move() {
    let mut s = fresh();
    let alice = ident(1);
    assert_eq!(s.balance(&key(&alice)), 1000);
    assert_eq!(
        expect_rejected(
            &mut s,
            &alice,
            TxKind::Stake {
                role: StakeRole::Relay,
                amount: 1
            }
        ),
        Rejection::UnknownSigner
    );
}

#[test]
fn genesis_validators_hold_their_stake_and_form_the_validator_set() {
    let s = fresh();
    let v = key(&validator());
    assert_eq!(s.validators().iter().collect::<Vec<_>>(), [(&v, &100)]);
    assert_eq!(s.stake(&v, StakeRole::Validator), 100);
    assert_eq!(s.stakes(StakeRole::Validator).collect::<Vec<_>>(), [(v, 100)]);
    assert_eq!(s.stakes(StakeRole::Relay).count(), 0);
}

#[test]
fn a_genesis_validator_can_unstake_once_registered() {
    let mut s = fresh();
    let v = validator();
    register(&mut s, &v, "val");
    send(
        &mut s,
        &v,
        TxKind::Unstake {
            role: StakeRole::Validator,
            amount: 40,
        },
    )
    .unwrap();
    assert_eq!((s.balance(&key(&v)), s.stake(&key(&v), StakeRole::Validator)), (40, 60));
    // The set itself changes only at epoch boundaries, which consensus owns.
    assert_eq!(s.validators().get(&key(&v)), Some(&100));
}
