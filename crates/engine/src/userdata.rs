//! User data of calls: RequestAttachUserData (adds pairs), RequestUpdateUserData (replaces
//! keys), RequestDeletePair and RequestDeleteUserData, bounded by `user-data-limit` bytes of
//! compact JSON. The data lives on the call (see `calls`), travels into consultations and through
//! transfers, and is announced by EventAttachedDataChanged (`docs/call-model.md`, "User data").

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
