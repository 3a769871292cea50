//! Bitcoin addresses in `[[pool]]` entries, checked with the `bitcoin`
//! crate (the policy crate keeps to the file's shape and knows no
//! addresses).
//!
//! - A node pool's `payout_address` must be an address of its `chain`: an
//!   error, since every block found would pay an address the node's chain
//!   cannot have (the node would refuse it, or worse).
//! - A Stratum pool's `user` (its part before the first `.`, where pools
//!   put the worker name) that looks like an address is parsed too, and a
//!   malformed one is a warning: a pool that pays the user's address would
//!   pay nowhere, but many pools use account names instead, so a user that
//!   does not look like an address is left alone. Ordinary pools name no
//!   chain (there are testnet pools too), so only the address's form is
//!   checked, not its network.

use std::str::FromStr;

use bitcoin::Address;
use hashsplit_policy::Chain;
use hashsplit_policy::diag::Diagnostics;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use crate::node::payout_script;
use crate::pool::node::network;

/// The keys that hold addresses; everything else is the policy crate's.
#[derive(Debug, Deserialize)]
struct AddressKeys {
    url: Option<String>,
    user: Option<Spanned<String>>,
    chain: Option<String>,
    payout_address: Option<Spanned<String>>,
}

/// Checks every address in the `[[pool]]` entries of `pools` (as read from
/// the file, before validation), recording problems in `diag`.
pub(super) fn check(diag: &mut Diagnostics<'_>, pools: Option<&Spanned<DeValue<'_>>>) {
    let Some(DeValue::Array(entries)) = pools.map(Spanned::get_ref) else {
        return;
    };
    // Shapes the policy crate refuses are reported there, not twice here.
    let keys: Vec<Option<AddressKeys>> = entries
        .iter()
        .map(|entry| AddressKeys::deserialize(ValueDeserializer::from(entry.clone())).ok())
        .collect();
    let chain_of = |keys: &AddressKeys| keys.chain.as_deref().and_then(Chain::from_name);
    for (index, keys) in keys.iter().enumerate() {
        let Some(keys) = keys else { continue };
        if is_node(keys) {
            if let (Some(chain), Some(address)) = (chain_of(keys), &keys.payout_address)
                && let Err(e) = payout_script(address.get_ref().trim(), network(chain))
            {
                diag.error(
                    format!("pool[{index}].payout_address"),
                    Some(address.span()),
                    format!("{e} (chain {chain}): blocks must pay an address of the node's chain"),
                );
            }
        } else if let Some(user) = &keys.user
            && let Some(problem) = user_address_problem(user.get_ref())
        {
            diag.warning(format!("pool[{index}].user"), Some(user.span()), problem);
        }
    }
}

fn is_node(keys: &AddressKeys) -> bool {
    keys.url
        .as_deref()
        .is_some_and(|url| url.starts_with("http://"))
}

/// Returns what is wrong with the address a pool `user` seems to hold, if
/// it seems to hold one.
pub fn user_address_problem(user: &str) -> Option<String> {
    let candidate = user.split('.').next().unwrap_or_default();
    if !looks_like_address(candidate) {
        return None;
    }
    Address::from_str(candidate).err().map(|e| {
        format!(
            "{candidate:?} looks like a bitcoin address but is not one ({e}); \
             a pool that pays the user's address cannot pay it"
        )
    })
}

/// Returns whether `text` has the shape of an address: a bech32 prefix, or
/// base58 of an address's length with an address's first character.
fn looks_like_address(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if ["bc1", "tb1", "bcrt1"].iter().any(|p| lower.starts_with(p)) {
        return text.len() >= 14;
    }
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (26..=35).contains(&text.len())
        && text.starts_with(['1', '3', 'm', 'n', '2'])
        && text.chars().all(|c| BASE58.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_address_shaped_users_are_checked_and_only_for_their_form() {
        for user in ["proxy.rig", "me", "account_name.worker1", "x"] {
            assert_eq!(user_address_problem(user), None, "{user}");
        }
        for good in [
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1",
            "bcrt1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpvxat9t",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        ] {
            assert_eq!(user_address_problem(good), None, "{good}");
        }
        for typo in [
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx.rig1",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
        ] {
            let problem = user_address_problem(typo).expect(typo);
            assert!(problem.contains("not one"), "{problem}");
        }
    }
}
