//! User data of calls: RequestAttachUserData (adds pairs), RequestUpdateUserData (replaces
//! keys), RequestDeletePair and RequestDeleteUserData, bounded by `user-data-limit` bytes of
//! compact JSON. The data lives on the call (see `calls`), travels into consultations and through
//! transfers, and is announced by EventAttachedDataChanged (`docs/call-model.md`, "Requests → CSTA services").
//! RequestMakeCall, RequestInitiateTransfer and RequestInitiateConference may carry `UserData`
//! for the call they make; [`check_new_call`] bounds it before anything is sent.

use ctid_protocol::{ErrorCode, KvList, Request, RequestName};

use crate::outbox::Refusal;

/// The size that counts against `user-data-limit`: the compact JSON of the list.
pub fn size(k: &KvList) -> usize {
    k.to_json().len()
}

/// The call's user data after `req`, or why it is refused.
pub fn apply(req: &Request, current: &KvList, limit: usize) -> Result<KvList, Refusal> {
    let mut data = current.clone();
    let need = |v: &Option<KvList>| {
        v.clone()
            .ok_or_else(|| (ErrorCode::INVALID_ATTR, "UserData missing".to_string()))
    };
    match req.name {
        RequestName::RequestAttachUserData => {
            for (k, v) in need(&req.user_data)?.iter() {
                data.push(k, v.clone());
            }
        }
        RequestName::RequestUpdateUserData => {
            for (k, v) in need(&req.user_data)?.iter() {
                data.insert(k, v.clone());
            }
        }
        RequestName::RequestDeletePair => {
            let Some(key) = req.data_key.clone() else {
                return Err((ErrorCode::INVALID_ATTR, "DataKey missing".into()));
            };
            if data.remove(&key) == 0 {
                return Err((
                    ErrorCode::INVALID_ATTR,
                    format!("DataKey {key:?} is not in the call's user data"),
                ));
            }
        }
        _ => data = KvList::new(),
    }
    if size(&data) > limit {
        return Err((
            ErrorCode::INVALID_ATTR,
            format!("user data would exceed {limit} bytes"),
        ));
    }
    Ok(data)
}

/// A call request's `UserData` for the call it makes, over `base` (what a consultation copies
/// from its original call; its keys give way to the request's): refused with 53 when the
/// result would exceed `limit`.
pub fn check_new_call(req: &Request, base: &KvList, limit: usize) -> Result<(), Refusal> {
    let Some(top) = &req.user_data else {
        return Ok(());
    };
    let mut data = base.clone();
    for (k, _) in top.iter() {
        data.remove(k);
    }
    for (k, v) in top.iter() {
        data.push(k, v.clone());
    }
    if size(&data) > limit {
        return Err((
            ErrorCode::INVALID_ATTR,
            format!("the new call's user data would exceed {limit} bytes"),
        ));
    }
    Ok(())
}
