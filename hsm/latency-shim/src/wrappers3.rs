// Generated from cryptoki-sys 0.5's CK_FUNCTION_LIST_3_0 (the functions PKCS#11 3.0 added,
// but C_GetInterfaceList and C_GetInterface).
wrap3! {
    C_LoginUser(arg1: CK_SESSION_HANDLE, arg2: CK_USER_TYPE, arg3: *mut CK_UTF8CHAR, arg4: CK_ULONG, arg5: *mut CK_UTF8CHAR, arg6: CK_ULONG);
    C_SessionCancel(arg1: CK_SESSION_HANDLE, arg2: CK_FLAGS);
    C_MessageEncryptInit(arg1: CK_SESSION_HANDLE, arg2: *mut CK_MECHANISM, arg3: CK_OBJECT_HANDLE);
    C_EncryptMessage(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: CK_ULONG, arg8: *mut CK_BYTE, arg9: *mut CK_ULONG);
    C_EncryptMessageBegin(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG);
    C_EncryptMessageNext(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: *mut CK_ULONG, arg8: CK_FLAGS);
    C_MessageEncryptFinal(arg1: CK_SESSION_HANDLE);
    C_MessageDecryptInit(arg1: CK_SESSION_HANDLE, arg2: *mut CK_MECHANISM, arg3: CK_OBJECT_HANDLE);
    C_DecryptMessage(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: CK_ULONG, arg8: *mut CK_BYTE, arg9: *mut CK_ULONG);
    C_DecryptMessageBegin(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG);
    C_DecryptMessageNext(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: *mut CK_ULONG, arg8: CK_FLAGS);
    C_MessageDecryptFinal(arg1: CK_SESSION_HANDLE);
    C_MessageSignInit(arg1: CK_SESSION_HANDLE, arg2: *mut CK_MECHANISM, arg3: CK_OBJECT_HANDLE);
    C_SignMessage(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: *mut CK_ULONG);
    C_SignMessageBegin(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG);
    C_SignMessageNext(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: *mut CK_ULONG);
    C_MessageSignFinal(arg1: CK_SESSION_HANDLE);
    C_MessageVerifyInit(arg1: CK_SESSION_HANDLE, arg2: *mut CK_MECHANISM, arg3: CK_OBJECT_HANDLE);
    C_VerifyMessage(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: CK_ULONG);
    C_VerifyMessageBegin(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG);
    C_VerifyMessageNext(arg1: CK_SESSION_HANDLE, arg2: *mut c_void, arg3: CK_ULONG, arg4: *mut CK_BYTE, arg5: CK_ULONG, arg6: *mut CK_BYTE, arg7: CK_ULONG);
    C_MessageVerifyFinal(arg1: CK_SESSION_HANDLE);
}

/// The 3.0 list: every 2.40 function and every 3.0 one, each delayed.
fn our_list3(version: CK_VERSION) -> CK_FUNCTION_LIST_3_0 {
    let l = our_list(version);
    CK_FUNCTION_LIST_3_0 {
        version,
        C_GetFunctionList: l.C_GetFunctionList,
        C_Initialize: l.C_Initialize,
        C_Finalize: l.C_Finalize,
        C_GetInfo: l.C_GetInfo,
        C_GetSlotList: l.C_GetSlotList,
        C_GetSlotInfo: l.C_GetSlotInfo,
        C_GetTokenInfo: l.C_GetTokenInfo,
        C_GetMechanismList: l.C_GetMechanismList,
        C_GetMechanismInfo: l.C_GetMechanismInfo,
        C_InitToken: l.C_InitToken,
        C_InitPIN: l.C_InitPIN,
        C_SetPIN: l.C_SetPIN,
        C_OpenSession: l.C_OpenSession,
        C_CloseSession: l.C_CloseSession,
        C_CloseAllSessions: l.C_CloseAllSessions,
        C_GetSessionInfo: l.C_GetSessionInfo,
        C_GetOperationState: l.C_GetOperationState,
        C_SetOperationState: l.C_SetOperationState,
        C_Login: l.C_Login,
        C_Logout: l.C_Logout,
        C_CreateObject: l.C_CreateObject,
        C_CopyObject: l.C_CopyObject,
        C_DestroyObject: l.C_DestroyObject,
        C_GetObjectSize: l.C_GetObjectSize,
        C_GetAttributeValue: l.C_GetAttributeValue,
        C_SetAttributeValue: l.C_SetAttributeValue,
        C_FindObjectsInit: l.C_FindObjectsInit,
        C_FindObjects: l.C_FindObjects,
        C_FindObjectsFinal: l.C_FindObjectsFinal,
        C_EncryptInit: l.C_EncryptInit,
        C_Encrypt: l.C_Encrypt,
        C_EncryptUpdate: l.C_EncryptUpdate,
        C_EncryptFinal: l.C_EncryptFinal,
        C_DecryptInit: l.C_DecryptInit,
        C_Decrypt: l.C_Decrypt,
        C_DecryptUpdate: l.C_DecryptUpdate,
        C_DecryptFinal: l.C_DecryptFinal,
        C_DigestInit: l.C_DigestInit,
        C_Digest: l.C_Digest,
        C_DigestUpdate: l.C_DigestUpdate,
        C_DigestKey: l.C_DigestKey,
        C_DigestFinal: l.C_DigestFinal,
        C_SignInit: l.C_SignInit,
        C_Sign: l.C_Sign,
        C_SignUpdate: l.C_SignUpdate,
        C_SignFinal: l.C_SignFinal,
        C_SignRecoverInit: l.C_SignRecoverInit,
        C_SignRecover: l.C_SignRecover,
        C_VerifyInit: l.C_VerifyInit,
        C_Verify: l.C_Verify,
        C_VerifyUpdate: l.C_VerifyUpdate,
        C_VerifyFinal: l.C_VerifyFinal,
        C_VerifyRecoverInit: l.C_VerifyRecoverInit,
        C_VerifyRecover: l.C_VerifyRecover,
        C_DigestEncryptUpdate: l.C_DigestEncryptUpdate,
        C_DecryptDigestUpdate: l.C_DecryptDigestUpdate,
        C_SignEncryptUpdate: l.C_SignEncryptUpdate,
        C_DecryptVerifyUpdate: l.C_DecryptVerifyUpdate,
        C_GenerateKey: l.C_GenerateKey,
        C_GenerateKeyPair: l.C_GenerateKeyPair,
        C_WrapKey: l.C_WrapKey,
        C_UnwrapKey: l.C_UnwrapKey,
        C_DeriveKey: l.C_DeriveKey,
        C_SeedRandom: l.C_SeedRandom,
        C_GenerateRandom: l.C_GenerateRandom,
        C_GetFunctionStatus: l.C_GetFunctionStatus,
        C_CancelFunction: l.C_CancelFunction,
        C_WaitForSlotEvent: l.C_WaitForSlotEvent,
        C_GetInterfaceList: None,
        C_GetInterface: Some(C_GetInterface),
        C_LoginUser: Some(C_LoginUser),
        C_SessionCancel: Some(C_SessionCancel),
        C_MessageEncryptInit: Some(C_MessageEncryptInit),
        C_EncryptMessage: Some(C_EncryptMessage),
        C_EncryptMessageBegin: Some(C_EncryptMessageBegin),
        C_EncryptMessageNext: Some(C_EncryptMessageNext),
        C_MessageEncryptFinal: Some(C_MessageEncryptFinal),
        C_MessageDecryptInit: Some(C_MessageDecryptInit),
        C_DecryptMessage: Some(C_DecryptMessage),
        C_DecryptMessageBegin: Some(C_DecryptMessageBegin),
        C_DecryptMessageNext: Some(C_DecryptMessageNext),
        C_MessageDecryptFinal: Some(C_MessageDecryptFinal),
        C_MessageSignInit: Some(C_MessageSignInit),
        C_SignMessage: Some(C_SignMessage),
        C_SignMessageBegin: Some(C_SignMessageBegin),
        C_SignMessageNext: Some(C_SignMessageNext),
        C_MessageSignFinal: Some(C_MessageSignFinal),
        C_MessageVerifyInit: Some(C_MessageVerifyInit),
        C_VerifyMessage: Some(C_VerifyMessage),
        C_VerifyMessageBegin: Some(C_VerifyMessageBegin),
        C_VerifyMessageNext: Some(C_VerifyMessageNext),
        C_MessageVerifyFinal: Some(C_MessageVerifyFinal),
    }
}
