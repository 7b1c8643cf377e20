//! T-Library enumerations (docs/protocol.md, §3), sent on the wire by
//! name (`"ModeShare"`, `"AddressTypeDN"`); the numbers are kept for reference and logs.

use std::fmt;

/// An enumeration sent by its T-Library name (what attribute decoding needs of it).
pub trait Named: Sized {
    /// Looks a T-Library name up.
    fn from_name(name: &str) -> Option<Self>;
    /// The accepted names, comma-separated.
    fn names() -> String;
}

macro_rules! name_enum {
    ($(#[$meta:meta])* $ty:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr, $wire:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $(
                $(#[$vmeta])*
                #[doc = concat!("`", $wire, "` (", stringify!($value), ").")]
                $variant,
            )*
        }

        impl $ty {
            /// Every value, in T-Library order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The T-Library name, as sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $wire,)* }
            }

            /// Looks a T-Library name up (exact, case-sensitive).
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($wire => Some($ty::$variant),)* _ => None }
            }

            /// The T-Library numeric value.
            pub fn value(self) -> i32 {
                match self { $($ty::$variant => $value,)* }
            }

            /// Looks a T-Library numeric value up.
            pub fn from_value(value: i32) -> Option<Self> {
                match value { $($value => Some($ty::$variant),)* _ => None }
            }

            /// The accepted names, comma-separated (for error messages).
            pub fn names() -> String {
                [$($wire),*].join(", ")
            }
        }

        impl Named for $ty {
            fn from_name(name: &str) -> Option<Self> {
                $ty::from_name(name)
            }
            fn names() -> String {
                $ty::names()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s).ok_or_else(|| crate::names::UnknownName(s.to_owned()))
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// From its T-Library name (the inverse of `Serialize`).
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::names::deserialize_named(d, stringify!($ty), $ty::from_name)
            }
        }
    };
}

name_enum! {
    /// `TRegisterMode` (§3.4). Default ModeShare.
    RegisterMode {
        Share = 0, "ModeShare";
        Private = 1, "ModePrivate";
        Monitor = 2, "ModeMonitor";
    }
}

name_enum! {
    /// `TControlMode` (§3.4). Default RegisterDefault.
    ControlMode {
        Default = 0, "RegisterDefault";
        Force = 1, "RegisterForce";
        Local = 2, "RegisterLocal";
    }
}

name_enum! {
    /// `TAddressType` (§2.1).
    AddressType {
        Unknown = 0, "AddressTypeUnknown";
        /// Extension not in an ACD group: the hot-desking type.
        Dn = 1, "AddressTypeDN";
        Position = 2, "AddressTypePosition";
        Queue = 3, "AddressTypeQueue";
        RouteDn = 4, "AddressTypeRouteDN";
        Trunk = 5, "AddressTypeTrunk";
        VoiceChannel = 6, "AddressTypeVoiceChannel";
        DataChannel = 7, "AddressTypeDataChannel";
        Announcement = 8, "AddressTypeAnnouncement";
        Asai = 9, "AddressTypeASAI";
        AcdGroup = 10, "AddressTypeACDGroup";
        Vsp = 11, "AddressTypeVSP";
        RouteQueue = 12, "AddressTypeRouteQueue";
        AgentId = 13, "AddressTypeAgentID";
        Other = 99, "AddressTypeOther";
    }
}

name_enum! {
    /// `TAddressInfoType` (§11.3): the `InfoType` of RequestQueryAddress / EventAddressInfo.
    AddressInfoType {
        AddressStatus = 0, "AddressInfoAddressStatus";
        MessageWaitingStatus = 1, "AddressInfoMessageWaitingStatus";
        AssociationStatus = 2, "AddressInfoAssociationStatus";
        CallForwardingStatus = 3, "AddressInfoCallForwardingStatus";
        AgentStatus = 4, "AddressInfoAgentStatus";
        NumberOfAgentsInQueue = 5, "AddressInfoNumberOfAgentsInQueue";
        NumberOfAvailableAgentsInQueue = 6, "AddressInfoNumberOfAvailableAgentsInQueue";
        NumberOfCallsInQueue = 7, "AddressInfoNumberOfCallsInQueue";
        AddressType = 8, "AddressInfoAddressType";
        CallsQuery = 9, "AddressInfoCallsQuery";
        SendAllCallsStatus = 10, "AddressInfoSendAllCallsStatus";
        QueueLoginAudit = 11, "AddressInfoQueueLoginAudit";
        NumberOfIdleClassifiers = 12, "AddressInfoNumberOfIdleClassifiers";
        NumberOfClassifiersInUse = 13, "AddressInfoNumberOfClassifiersInUse";
        NumberOfIdleTrunks = 14, "AddressInfoNumberOfIdleTrunks";
        NumberOfTrunksInUse = 15, "AddressInfoNumberOfTrunksInUse";
        DatabaseValue = 16, "AddressInfoDatabaseValue";
        DnStatus = 17, "AddressInfoDNStatus";
        QueueStatus = 18, "AddressInfoQueueStatus";
    }
}

name_enum! {
    /// `AddressStatusInfoType` (§2.5): the value of `Extensions.status` in the DN status.
    AddressStatus {
        Idle = 0, "AddressStatusIdle";
        Origination = 1, "AddressStatusOrigination";
        Dialing = 2, "AddressStatusDialing";
        Talking = 3, "AddressStatusTalking";
        Ringing = 4, "AddressStatusRinging";
        Held = 5, "AddressStatusHeld";
        Treatment = 6, "AddressStatusTreatment";
        LockedOut = 7, "AddressStatusLockedOut";
        Maintenance = 8, "AddressStatusMaintenance";
        Available = 9, "AddressStatusAvailable";
        Vacant = 10, "AddressStatusVacant";
    }
}

name_enum! {
    /// `TAgentWorkMode` (§7). AgentAutoIn doubles as AgentLegalGuard (a NotReady substate).
    AgentWorkMode {
        Unknown = 0, "AgentWorkModeUnknown";
        ManualIn = 1, "AgentManualIn";
        AutoIn = 2, "AgentAutoIn";
        AfterCallWork = 3, "AgentAfterCallWork";
        AuxWork = 4, "AgentAuxWork";
        NoCallDisconnect = 5, "AgentNoCallDisconnect";
        WalkAway = 6, "AgentWalkAway";
        ReturnBack = 7, "AgentReturnBack";
    }
}

name_enum! {
    /// `TCallType` (§6.2).
    CallType {
        Unknown = 0, "CallTypeUnknown";
        Internal = 1, "CallTypeInternal";
        Inbound = 2, "CallTypeInbound";
        Outbound = 3, "CallTypeOutbound";
        Consult = 4, "CallTypeConsult";
    }
}

name_enum! {
    /// `TDNRole` (§6.2): ThisDNRole / OtherDNRole / ThirdPartyDNRole.
    DnRole {
        Unknown = 0, "RoleUnknown";
        Origination = 1, "RoleOrigination";
        Destination = 2, "RoleDestination";
        ConferenceMember = 3, "RoleConferenceMember";
        NewParty = 4, "RoleNewParty";
        AddedBy = 5, "RoleAddedBy";
        DeletedBy = 6, "RoleDeletedBy";
        TransferredBy = 7, "RoleTransferredBy";
        DeletedParty = 8, "RoleDeletedParty";
        ConferencedBy = 9, "RoleConferencedBy";
        Observer = 10, "RoleObserver";
    }
}

name_enum! {
    /// `TForwardMode` (§6.4).
    ForwardMode {
        None = 0, "ForwardModeNone";
        Unconditional = 1, "ForwardModeUnconditional";
        OnBusy = 2, "ForwardModeOnBusy";
        OnNoAnswer = 3, "ForwardModeOnNoAnswer";
        OnBusyAndNoAnswer = 4, "ForwardModeOnBusyAndNoAnswer";
        SendAllCalls = 5, "ForwardModeSendAllCalls";
    }
}

name_enum! {
    /// `TMakeCallType` (§6.4). Default MakeCallRegular.
    MakeCallType {
        Regular = 0, "MakeCallRegular";
        DirectAgent = 1, "MakeCallDirectAgent";
        SupervisorAssist = 2, "MakeCallSupervisorAssist";
        Priority = 3, "MakeCallPriority";
        DirectPriority = 4, "MakeCallDirectPriority";
    }
}

name_enum! {
    /// `TRouteType` (RequestRouteCall, §6.4; order from the public T-Library header).
    RouteType {
        Unknown = 0, "RouteTypeUnknown";
        Default = 1, "RouteTypeDefault";
        Label = 2, "RouteTypeLabel";
        OverwriteDnis = 3, "RouteTypeOverwriteDNIS";
        Ddd = 4, "RouteTypeDDD";
        Iddd = 5, "RouteTypeIDDD";
        Direct = 6, "RouteTypeDirect";
        Reject = 7, "RouteTypeReject";
        Announcement = 8, "RouteTypeAnnouncement";
        PostFeature = 9, "RouteTypePostFeature";
        DirectAgent = 10, "RouteTypeDirectAgent";
        Priority = 11, "RouteTypePriority";
        DirectPriority = 12, "RouteTypeDirectPriority";
        AgentId = 13, "RouteTypeAgentID";
        CallDisconnect = 14, "RouteTypeCallDisconnect";
    }
}

name_enum! {
    /// `TCallState` (§6.2, §11.3): CallState on EventReleased and similar.
    CallState {
        Ok = 0, "CallStateOk";
        Transferred = 1, "CallStateTransferred";
        Conferenced = 2, "CallStateConferenced";
        GeneralError = 3, "CallStateGeneralError";
        SystemError = 4, "CallStateSystemError";
        RemoteRelease = 5, "CallStateRemoteRelease";
        Busy = 6, "CallStateBusy";
        NoAnswer = 7, "CallStateNoAnswer";
        SitDetected = 8, "CallStateSitDetected";
        AnsweringMachineDetected = 9, "CallStateAnsweringMachineDetected";
        AllTrunksBusy = 10, "CallStateAllTrunksBusy";
        SitInvalidnum = 11, "CallStateSitInvalidnum";
        SitVacant = 12, "CallStateSitVacant";
        SitIntercept = 13, "CallStateSitIntercept";
        SitUnknown = 14, "CallStateSitUnknown";
        SitNocircuit = 15, "CallStateSitNocircuit";
        SitReorder = 16, "CallStateSitReorder";
        FaxDetected = 17, "CallStateFaxDetected";
        QueueFull = 18, "CallStateQueueFull";
        Cleared = 19, "CallStateCleared";
        Overflowed = 20, "CallStateOverflowed";
        Abandoned = 21, "CallStateAbandoned";
        Redirected = 22, "CallStateRedirected";
        Forwarded = 23, "CallStateForwarded";
        Consult = 24, "CallStateConsult";
        Pickedup = 25, "CallStatePickedup";
        Dropped = 26, "CallStateDropped";
        Droppednoanswer = 27, "CallStateDroppednoanswer";
        Unknown = 28, "CallStateUnknown";
        Covered = 29, "CallStateCovered";
        ConverseOn = 30, "CallStateConverseOn";
        Bridged = 31, "CallStateBridged";
        Deafened = 49, "CallStateDeafened";
        Held = 50, "CallStateHeld";
    }
}

name_enum! {
    /// `TPartyState` base states (§11.3), named without the `PtState_` prefix as ctid sends them in
    /// `Extensions.ps-<n>`. The flag bits (NoListen 0x10, NoTalk 0x20, Bridged 0x40, Audit 0x80,
    /// ...) are not modelled here.
    PartyState {
        Null = 0x0, "NULL";
        Initiated = 0x1, "Initiated";
        Queued = 0x9, "Queued";
        Alerting = 0xA, "Alerting";
        Busy = 0xB, "Busy";
        Connected = 0xC, "Connected";
        CpDetect = 0xD, "CP_Detect";
        Held = 0xE, "Held";
        Failed = 0xF, "Failed";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert_eq!(RegisterMode::Share.as_str(), "ModeShare");
        assert_eq!(
            AddressType::from_name("AddressTypeDN"),
            Some(AddressType::Dn)
        );
        assert_eq!(AddressType::Other.value(), 99);
        assert_eq!(AddressInfoType::DnStatus.value(), 17);
        assert_eq!(AgentWorkMode::AfterCallWork.as_str(), "AgentAfterCallWork");
        assert_eq!(CallType::Inbound.as_str(), "CallTypeInbound");
        assert_eq!(CallState::from_value(50), Some(CallState::Held));
        assert_eq!(PartyState::Connected.as_str(), "Connected");
        assert_eq!(RouteType::AgentId.value(), 13);
        for t in AddressInfoType::ALL {
            assert_eq!(AddressInfoType::from_value(t.value()), Some(*t));
            assert_eq!(AddressInfoType::from_name(t.as_str()), Some(*t));
        }
    }

    #[test]
    fn serde_by_name_round_trip() {
        for t in AddressType::ALL {
            let v = serde_json::to_value(t).unwrap();
            assert_eq!(v, serde_json::json!(t.as_str()));
            assert_eq!(serde_json::from_value::<AddressType>(v).unwrap(), *t);
        }
        let e = serde_json::from_value::<PartyState>(serde_json::json!("Dancing")).unwrap_err();
        assert!(e.to_string().contains("unknown PartyState name"), "{e}");
        let n = crate::EventName::EventDialing;
        let v = serde_json::to_value(n).unwrap();
        assert_eq!(serde_json::from_value::<crate::EventName>(v).unwrap(), n);
        assert!(serde_json::from_value::<crate::RequestName>(serde_json::json!(3)).is_err());
    }
}
