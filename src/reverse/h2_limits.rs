//! HTTP/2 flood limits: the limits themselves are h2's (set in [`super::conn`]); this
//! recognises a connection that ended because a client tripped one, so it is logged.

use std::error::Error as StdError;

/// Whether `err` is our GOAWAY `ENHANCE_YOUR_CALM`, which h2 sends when a client
/// resets too many streams (rapid reset) or makes us reset too many (MadeYouReset).
pub fn ended_for_resets(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        cur = e.source();
    }
    false
}
