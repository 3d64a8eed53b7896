//! Tables of cases for the policy language and AWS KMS's evaluation logic.

use super::*;

const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn base() -> Request {
    Request {
        principal_arn: ALICE.into(),
        principal_account: "111122223333".into(),
        role_arn: None,
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        context: Default::default(),
        alternatives: Default::default(),
    }
}

fn identity(condition: &str) -> PolicyDocument {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{condition}}}]}}"#
    );
    parse(&text, PolicyKind::Identity).unwrap_or_else(|e| panic!("{text}: {e}"))
}

type Ctx<'a> = &'a [(&'a str, &'a [&'a str])];

/// (condition block, request context, does the condition hold)
fn condition_cases() -> Vec<(&'static str, Ctx<'static>, bool)> {
    vec![
        // --- String family
        (
            r#"{"StringEquals":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["HR"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:dept":["hr","it"]}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:dept":["hr","it"]}}"#,
            &[("kms:EncryptionContext:dept", &["ops"])],
            false,
        ),
        (
            r#"{"StringEquals":{"KMS:ENCRYPTIONCONTEXT:DEPT":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            true,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            true,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            false,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:dept":["hr","it"]}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            false,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:dept":["hr","it"]}}"#,
            &[("kms:EncryptionContext:dept", &["ops"])],
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["HR"])],
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            false,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[],
            false,
        ),
        (
            r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["HR"])],
            false,
        ),
        (
            r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            true,
        ),
        (
            r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            false,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"h?"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"h?"}}"#,
            &[("kms:EncryptionContext:dept", &["hrx"])],
            false,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"*"}}"#,
            &[("kms:EncryptionContext:dept", &[""])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"H*"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            false,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:dept":"*r"}}"#,
            &[],
            false,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:path":"a*b*c"}}"#,
            &[("kms:EncryptionContext:path", &["aXXbYYc"])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:path":"a*b*c"}}"#,
            &[("kms:EncryptionContext:path", &["aXXcYYb"])],
            false,
        ),
        (
            r#"{"StringNotLike":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            false,
        ),
        (
            r#"{"StringNotLike":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            true,
        ),
        (
            r#"{"StringNotLike":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringEqualsIfExists":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringEqualsIfExists":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            true,
        ),
        (
            r#"{"StringEqualsIfExists":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["it"])],
            false,
        ),
        (
            r#"{"StringLikeIfExists":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringLikeIfExists":{"kms:EncryptionContext:dept":"h*"}}"#,
            &[("kms:EncryptionContext:dept", &["x"])],
            false,
        ),
        (
            r#"{"StringNotEqualsIfExists":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[("kms:EncryptionContext:dept", &["hr"])],
            false,
        ),
        (
            r#"{"StringNotEqualsIfExists":{"kms:EncryptionContext:dept":"hr"}}"#,
            &[],
            true,
        ),
        // --- multiple keys AND, multiple operators AND
        (
            r#"{"StringEquals":{"kms:EncryptionContext:a":"1","kms:EncryptionContext:b":"2"}}"#,
            &[
                ("kms:EncryptionContext:a", &["1"]),
                ("kms:EncryptionContext:b", &["2"]),
            ],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:a":"1","kms:EncryptionContext:b":"2"}}"#,
            &[("kms:EncryptionContext:a", &["1"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:a":"1"},"StringLike":{"kms:EncryptionContext:b":"2*"}}"#,
            &[
                ("kms:EncryptionContext:a", &["1"]),
                ("kms:EncryptionContext:b", &["20"]),
            ],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:a":"1"},"StringLike":{"kms:EncryptionContext:b":"2*"}}"#,
            &[
                ("kms:EncryptionContext:a", &["1"]),
                ("kms:EncryptionContext:b", &["30"]),
            ],
            false,
        ),
        // --- set qualifiers on a multi-valued key
        (
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[("kms:EncryptionContextKeys", &["b", "c"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[("kms:EncryptionContextKeys", &["c", "d"])],
            false,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[],
            false,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[("kms:EncryptionContextKeys", &["a", "b"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[("kms:EncryptionContextKeys", &["a"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[("kms:EncryptionContextKeys", &["a", "c"])],
            false,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}"#,
            &[],
            true,
        ),
        (
            r#"{"ForAllValues:StringLike":{"kms:EncryptionContextKeys":["app*"]}}"#,
            &[("kms:EncryptionContextKeys", &["appid", "apptier"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringLike":{"kms:EncryptionContextKeys":["app*"]}}"#,
            &[("kms:EncryptionContextKeys", &["appid", "user"])],
            false,
        ),
        (
            r#"{"ForAnyValue:StringLike":{"kms:EncryptionContextKeys":["app*"]}}"#,
            &[("kms:EncryptionContextKeys", &["appid", "user"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringNotEquals":{"kms:EncryptionContextKeys":["a"]}}"#,
            &[("kms:EncryptionContextKeys", &["a", "b"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringNotEquals":{"kms:EncryptionContextKeys":["a"]}}"#,
            &[("kms:EncryptionContextKeys", &["a"])],
            false,
        ),
        (
            r#"{"ForAllValues:StringNotEquals":{"kms:EncryptionContextKeys":["a"]}}"#,
            &[("kms:EncryptionContextKeys", &["b", "c"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringNotEquals":{"kms:EncryptionContextKeys":["a"]}}"#,
            &[("kms:EncryptionContextKeys", &["a", "c"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContextKeys":"a"}}"#,
            &[("kms:EncryptionContextKeys", &["b", "a"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringEqualsIgnoreCase":{"kms:GrantOperations":"encrypt"}}"#,
            &[("kms:GrantOperations", &["Encrypt", "Decrypt"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]}}"#,
            &[("kms:GrantOperations", &["Encrypt", "ReEncryptFrom"])],
            false,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]}}"#,
            &[("kms:GrantOperations", &["Decrypt"])],
            true,
        ),
        // --- Numeric family
        (
            r#"{"NumericEquals":{"kms:RequestCount":"5"}}"#,
            &[("kms:RequestCount", &["5"])],
            true,
        ),
        (
            r#"{"NumericEquals":{"kms:RequestCount":"5"}}"#,
            &[("kms:RequestCount", &["5.0"])],
            true,
        ),
        (
            r#"{"NumericEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["6"])],
            false,
        ),
        (r#"{"NumericEquals":{"kms:RequestCount":5}}"#, &[], false),
        (
            r#"{"NumericEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["five"])],
            false,
        ),
        (
            r#"{"NumericNotEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["6"])],
            true,
        ),
        (
            r#"{"NumericNotEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["5"])],
            false,
        ),
        (r#"{"NumericNotEquals":{"kms:RequestCount":5}}"#, &[], true),
        (
            r#"{"NumericLessThan":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["4"])],
            true,
        ),
        (
            r#"{"NumericLessThan":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["5"])],
            false,
        ),
        (
            r#"{"NumericLessThanEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["5"])],
            true,
        ),
        (
            r#"{"NumericLessThanEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["6"])],
            false,
        ),
        (
            r#"{"NumericGreaterThan":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["6"])],
            true,
        ),
        (
            r#"{"NumericGreaterThan":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["5"])],
            false,
        ),
        (
            r#"{"NumericGreaterThanEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["5"])],
            true,
        ),
        (
            r#"{"NumericGreaterThanEquals":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["-1"])],
            false,
        ),
        (
            r#"{"NumericLessThanIfExists":{"kms:RequestCount":5}}"#,
            &[],
            true,
        ),
        (
            r#"{"NumericLessThanIfExists":{"kms:RequestCount":5}}"#,
            &[("kms:RequestCount", &["9"])],
            false,
        ),
        (
            r#"{"NumericEquals":{"kms:RequestCount":["1","2"]}}"#,
            &[("kms:RequestCount", &["2"])],
            true,
        ),
        // --- Date family (aws:CurrentTime)
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            false,
        ),
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2030-01-01"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            false,
        ),
        (
            r#"{"DateEquals":{"aws:CurrentTime":"2026-11-23T12:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateEquals":{"aws:CurrentTime":"2026-11-23T12:00:00+01:00"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T11:00:00Z"])],
            true,
        ),
        (
            r#"{"DateEquals":{"aws:CurrentTime":"1795435200"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateNotEquals":{"aws:CurrentTime":"2026-11-23T12:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:01Z"])],
            true,
        ),
        (
            r#"{"DateNotEquals":{"aws:CurrentTime":"2026-11-23T12:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            false,
        ),
        (
            r#"{"DateLessThanEquals":{"aws:CurrentTime":"2026-11-23T12:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-11-23T12:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2026-11-23T11:59:59Z"])],
            false,
        ),
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#,
            &[],
            false,
        ),
        (
            r#"{"DateLessThanIfExists":{"aws:CurrentTime":"2000-01-01T00:00:00Z"}}"#,
            &[],
            true,
        ),
        // --- Bool
        (
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            &[("aws:SecureTransport", &["true"])],
            true,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":true}}"#,
            &[("aws:SecureTransport", &["true"])],
            true,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            &[("aws:SecureTransport", &["false"])],
            false,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":"false"}}"#,
            &[("aws:SecureTransport", &["false"])],
            true,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":"TRUE"}}"#,
            &[("aws:SecureTransport", &["true"])],
            true,
        ),
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &[], false),
        (
            r#"{"BoolIfExists":{"aws:SecureTransport":"true"}}"#,
            &[],
            true,
        ),
        (
            r#"{"Bool":{"kms:GrantIsForAWSResource":"true"}}"#,
            &[("kms:GrantIsForAWSResource", &["false"])],
            false,
        ),
        // --- Null
        (
            r#"{"Null":{"kms:EncryptionContextKeys":"true"}}"#,
            &[],
            true,
        ),
        (
            r#"{"Null":{"kms:EncryptionContextKeys":"true"}}"#,
            &[("kms:EncryptionContextKeys", &["a"])],
            false,
        ),
        (
            r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#,
            &[("kms:EncryptionContextKeys", &["a"])],
            true,
        ),
        (
            r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#,
            &[],
            false,
        ),
        (
            r#"{"Null":{"kms:EncryptionContextKeys":false}}"#,
            &[("kms:EncryptionContextKeys", &["a"])],
            true,
        ),
        (
            r#"{"Null":{"aws:PrincipalTag/team":"true"}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            false,
        ),
        // --- Arn family
        (
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            true,
        ),
        (
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/bob"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            false,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/*"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            true,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/alice"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            true,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::444455556666:*"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            false,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            false,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/*"}}"#,
            &[],
            false,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"not-an-arn"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            false,
        ),
        (
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/bob"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            true,
        ),
        (
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            false,
        ),
        (
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/*"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            false,
        ),
        (
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            true,
        ),
        (
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}"#,
            &[],
            true,
        ),
        (
            r#"{"ArnLikeIfExists":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}"#,
            &[],
            true,
        ),
        (
            r#"{"ArnLike":{"kms:GranteePrincipal":"arn:aws:iam::111122223333:role/app-*"}}"#,
            &[(
                "kms:GranteePrincipal",
                &["arn:aws:iam::111122223333:role/app-web"],
            )],
            true,
        ),
        (
            r#"{"ArnLike":{"kms:RetiringPrincipal":"arn:aws:iam::111122223333:role/app-*"}}"#,
            &[(
                "kms:RetiringPrincipal",
                &["arn:aws:iam::111122223333:role/ops"],
            )],
            false,
        ),
        // --- Null with both values: ORed, so it holds either way
        (
            r#"{"Null":{"kms:EncryptionContextKeys":["true","false"]}}"#,
            &[],
            true,
        ),
        (
            r#"{"Null":{"kms:EncryptionContextKeys":["true","false"]}}"#,
            &[("kms:EncryptionContextKeys", &["a"])],
            true,
        ),
        // --- An IPv4-mapped block in a policy is the IPv4 block it maps
        (
            r#"{"IpAddress":{"aws:SourceIp":"::ffff:10.0.0.0/104"}}"#,
            &[("aws:SourceIp", &["10.1.2.3"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"::ffff:10.0.0.0/104"}}"#,
            &[("aws:SourceIp", &["11.1.2.3"])],
            false,
        ),
        // --- IpAddress
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[("aws:SourceIp", &["10.1.2.3"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[("aws:SourceIp", &["11.1.2.3"])],
            false,
        ),
        // An IPv4-mapped IPv6 address is its IPv4 address.
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[("aws:SourceIp", &["::ffff:10.1.2.3"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"192.0.2.5"}}"#,
            &[("aws:SourceIp", &["192.0.2.5"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"192.0.2.5/32"}}"#,
            &[("aws:SourceIp", &["192.0.2.6"])],
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#,
            &[("aws:SourceIp", &["203.0.113.9"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}"#,
            &[("aws:SourceIp", &["192.168.4.4"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            &[("aws:SourceIp", &["2001:db8::1"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            &[("aws:SourceIp", &["2001:db9::1"])],
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            &[("aws:SourceIp", &["10.0.0.1"])],
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}"#,
            &[],
            false,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[("aws:SourceIp", &["11.1.2.3"])],
            true,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[("aws:SourceIp", &["10.1.2.3"])],
            false,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[],
            true,
        ),
        (
            r#"{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[],
            true,
        ),
        // --- KMS keys as the issue lists them
        (
            r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
            &[("kms:CallerAccount", &["111122223333"])],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
            &[("kms:CallerAccount", &["444455556666"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}"#,
            &[],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
            &[("kms:EncryptionAlgorithm", &["SYMMETRIC_DEFAULT"])],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:SigningAlgorithm":"ECDSA_SHA_256"}}"#,
            &[("kms:SigningAlgorithm", &["RSASSA_PSS_SHA_256"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:KeySpec":"SYMMETRIC_DEFAULT"}}"#,
            &[("kms:KeySpec", &["SYMMETRIC_DEFAULT"])],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:KeyUsage":"SIGN_VERIFY"}}"#,
            &[("kms:KeyUsage", &["ENCRYPT_DECRYPT"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:KeyOrigin":"AWS_KMS"}}"#,
            &[("kms:KeyOrigin", &["AWS_KMS"])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:RequestAlias":"alias/app-*"}}"#,
            &[("kms:RequestAlias", &["alias/app-web"])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:RequestAlias":"alias/app-*"}}"#,
            &[],
            false,
        ),
        (
            r#"{"ForAnyValue:StringLike":{"kms:ResourceAliases":"alias/app-*"}}"#,
            &[("kms:ResourceAliases", &["alias/x", "alias/app-db"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringLike":{"kms:ResourceAliases":"alias/app-*"}}"#,
            &[("kms:ResourceAliases", &["alias/x"])],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:GrantConstraintType":"EncryptionContextEquals"}}"#,
            &[("kms:GrantConstraintType", &["EncryptionContextSubset"])],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#,
            &[("aws:PrincipalAccount", &["111122223333"])],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"blue"}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"blue"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/env":"prod"}}"#,
            &[("aws:ResourceTag/env", &["prod"])],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/env":"prod"}}"#,
            &[],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/Env":"prod"}}"#,
            &[("aws:ResourceTag/env", &["prod"])],
            true,
        ),
        // --- Policy variables (in String and ARN values)
        (
            r#"{"StringEquals":{"aws:ResourceTag/owner":"${aws:username}"}}"#,
            &[
                ("aws:ResourceTag/owner", &["alice"]),
                ("aws:username", &["alice"]),
            ],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/owner":"${aws:username}"}}"#,
            &[
                ("aws:ResourceTag/owner", &["bob"]),
                ("aws:username", &["alice"]),
            ],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/owner":"${aws:username}"}}"#,
            &[("aws:ResourceTag/owner", &["${aws:username}"])],
            false,
        ),
        (
            r#"{"StringNotEquals":{"aws:ResourceTag/owner":"${aws:username}"}}"#,
            &[("aws:ResourceTag/owner", &["${aws:username}"])],
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"aws:ResourceTag/owner":"${aws:username}"}}"#,
            &[
                ("aws:ResourceTag/owner", &["ALICE"]),
                ("aws:username", &["alice"]),
            ],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:ResourceTag/owner":["${aws:username}","ops"]}}"#,
            &[("aws:ResourceTag/owner", &["ops"])],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:path":"home/${aws:username}/*"}}"#,
            &[
                ("kms:EncryptionContext:path", &["home/alice/x"]),
                ("aws:username", &["alice"]),
            ],
            true,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:path":"home/${aws:username}/*"}}"#,
            &[
                ("kms:EncryptionContext:path", &["home/bob/x"]),
                ("aws:username", &["alice"]),
            ],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:team":"${aws:PrincipalTag/team, 'none'}"}}"#,
            &[("kms:EncryptionContext:team", &["none"])],
            true,
        ),
        (
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/*"}}"#,
            &[
                ("aws:PrincipalArn", &[ALICE]),
                ("aws:PrincipalAccount", &["111122223333"]),
            ],
            true,
        ),
        (
            r#"{"ArnEquals":{"aws:PrincipalArn":"${aws:PrincipalArn}"}}"#,
            &[("aws:PrincipalArn", &[ALICE])],
            true,
        ),
    ]
}

#[test]
fn conditions() {
    let cases = condition_cases();
    assert!(cases.len() >= 140, "{}", cases.len());
    for (i, (cond, ctx, expect)) in cases.iter().enumerate() {
        let doc = identity(cond);
        let mut req = base();
        for (k, v) in ctx.iter() {
            req = req.with(k, v);
        }
        let got = evaluate(&doc, &req) == Outcome::Allow(PrincipalMatch::Direct);
        assert_eq!(got, *expect, "case {i}: {cond} with {ctx:?}");
    }
}

/// Encryption context keys that differ only in case (`Tenant`, `tenant`) are one condition key
/// holding two values, and the request holds one of them: an Allow's condition must hold for
/// both, a Deny's for either. Before, the key that sorted last was the only value, so a
/// caller chose which of its values a policy saw.
#[test]
fn encryption_context_keys_that_differ_in_case_are_read_strictly() {
    let twins = |values: &[&str]| {
        let mut r = base().with("kms:EncryptionContext:tenant", values);
        if values.len() > 1 {
            r.alternatives.insert("kms:encryptioncontext:tenant".into());
        }
        r
    };
    let deny = |condition: &str| {
        let text = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"kms:*","Resource":"*"}},{{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{condition}}}]}}"#
        );
        parse(&text, PolicyKind::Identity).unwrap()
    };
    let allowed = |doc: &PolicyDocument, req: &Request| {
        evaluate(doc, req) == Outcome::Allow(PrincipalMatch::Direct)
    };
    let cases: &[(&str, bool, &[&str], bool)] = &[
        // (condition, in a Deny statement, the request's values, allowed)
        (
            r#"{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            false,
            &["a"],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            false,
            &["b", "a"],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            false,
            &["a", "a"],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:tenant":["a","b"]}}"#,
            false,
            &["b", "a"],
            true,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:tenant":"b"}}"#,
            false,
            &["a", "b"],
            false,
        ),
        (
            r#"{"StringLike":{"kms:EncryptionContext:tenant":"a*"}}"#,
            false,
            &["ab", "b"],
            false,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            false,
            &["a", "b"],
            false,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            true,
            &["a"],
            true,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            true,
            &["b", "a"],
            false,
        ),
        (
            r#"{"StringNotEquals":{"kms:EncryptionContext:tenant":"a"}}"#,
            true,
            &["a", "a"],
            true,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:tenant":"b"}}"#,
            true,
            &["a", "b"],
            false,
        ),
        (
            r#"{"StringEquals":{"kms:EncryptionContext:tenant":"b"}}"#,
            true,
            &["a", "c"],
            true,
        ),
    ];
    for (i, (condition, in_deny, values, expect)) in cases.iter().enumerate() {
        let doc = if *in_deny {
            deny(condition)
        } else {
            identity(condition)
        };
        assert_eq!(
            allowed(&doc, &twins(values)),
            *expect,
            "case {i}: {condition} (deny: {in_deny}) with {values:?}"
        );
    }
    // A multi-valued key that is not a set of alternatives keeps IAM's reading: one value
    // that matches is enough for a condition without a qualifier.
    let keys = base().with("kms:EncryptionContextKeys", &["b", "a"]);
    assert!(allowed(
        &identity(r#"{"StringEquals":{"kms:EncryptionContextKeys":"a"}}"#),
        &keys
    ));
}

fn key_policy(statements: &str) -> PolicyDocument {
    let text = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
    parse(&text, PolicyKind::Key).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn id_policy(statements: &str) -> PolicyDocument {
    let text = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
    parse(&text, PolicyKind::Identity).unwrap_or_else(|e| panic!("{text}: {e}"))
}

const ROOT_ALLOW: &str = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;
const ALICE_ALLOW_ENCRYPT: &str = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:Encrypt","Resource":"*"}"#;
const ID_ALLOW_ALL: &str = r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#;
const ID_ALLOW_DECRYPT: &str = r#"{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}"#;
const ID_DENY_ALL: &str = r#"{"Effect":"Deny","Action":"kms:*","Resource":"*"}"#;

/// A session `name` of role `audit` of alice's account.
fn session(name: &str) -> Request {
    Request {
        principal_arn: format!("arn:aws:sts::111122223333:assumed-role/audit/{name}"),
        role_arn: Some("arn:aws:iam::111122223333:role/audit".into()),
        ..base()
    }
}

fn bob_other_account() -> Request {
    Request {
        principal_arn: "arn:aws:iam::444455556666:user/bob".into(),
        principal_account: "444455556666".into(),
        ..base()
    }
}

/// (key policy statements, identity policy statements, grant allows, request, expected)
#[allow(clippy::type_complexity)]
fn decision_cases() -> Vec<(&'static str, String, Vec<String>, bool, Request, Decision)> {
    use Decision::*;
    use Denial::*;
    let enc = base();
    let dec = Request {
        action: "kms:Decrypt".into(),
        ..base()
    };
    let create = Request {
        action: "kms:CreateKey".into(),
        resource: "*".into(),
        ..base()
    };
    let role = Request {
        principal_arn: "arn:aws:sts::111122223333:assumed-role/app/session1".into(),
        role_arn: Some("arn:aws:iam::111122223333:role/app".into()),
        ..base()
    };
    let s = |x: &str| x.to_string();
    vec![
        (
            "default policy, no identity policy",
            s(ROOT_ALLOW),
            vec![],
            false,
            enc.clone(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "default policy + identity allow",
            s(ROOT_ALLOW),
            vec![s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "default policy + identity allows other action",
            s(ROOT_ALLOW),
            vec![s(ID_ALLOW_DECRYPT)],
            false,
            enc.clone(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "default policy + identity allows decrypt",
            s(ROOT_ALLOW),
            vec![s(ID_ALLOW_DECRYPT)],
            false,
            dec.clone(),
            Allow,
        ),
        (
            "key policy names alice",
            s(ALICE_ALLOW_ENCRYPT),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "key policy names alice for encrypt only",
            s(ALICE_ALLOW_ENCRYPT),
            vec![],
            false,
            dec.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "key policy names alice, identity denies",
            s(ALICE_ALLOW_ENCRYPT),
            vec![s(ID_DENY_ALL)],
            false,
            enc.clone(),
            Deny(ExplicitInIdentityPolicy),
        ),
        (
            "identity allow without key policy trust",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/carol"},"Action":"kms:*","Resource":"*"}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "explicit deny in key policy beats direct allow",
            format!(
                r#"{ALICE_ALLOW_ENCRYPT},{{"Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*"}}"#
            ),
            vec![],
            false,
            enc.clone(),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "explicit deny in key policy beats grant",
            format!(
                r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}}"#
            ),
            vec![],
            true,
            enc.clone(),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "explicit deny in identity beats grant",
            s(ROOT_ALLOW),
            vec![s(ID_DENY_ALL)],
            true,
            enc.clone(),
            Deny(ExplicitInIdentityPolicy),
        ),
        (
            "grant alone",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/carol"},"Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            true,
            enc.clone(),
            Allow,
        ),
        (
            "principal star",
            s(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}"#),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "principal AWS star",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "principal account id delegates",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "principal account id without identity",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "action wildcard",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:Enc*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "action case-insensitive",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"KMS:encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "action wildcard miss",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:Dec*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "action list",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "NotAction allows the rest",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"NotAction":"kms:Decrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "NotAction excludes",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"NotAction":"kms:Decrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            dec.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "administrator can manage but not use",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":["kms:Create*","kms:Describe*","kms:Enable*","kms:List*","kms:Put*","kms:Update*","kms:Revoke*","kms:Disable*","kms:Get*","kms:Delete*","kms:TagResource","kms:UntagResource","kms:ScheduleKeyDeletion","kms:CancelKeyDeletion"],"Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "administrator can describe",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":["kms:Describe*"],"Resource":"*"}"#,
            ),
            vec![],
            false,
            Request {
                action: "kms:DescribeKey".into(),
                ..base()
            },
            Allow,
        ),
        (
            "resource names the key",
            s(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:*","Resource":"{KEY}"}}"#
            )),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "resource names another key",
            s(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:*","Resource":"{}"}}"#,
                KEY.replace("1234abcd", "99999999")
            )),
            vec![],
            false,
            enc.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "identity resource wildcard over keys",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:us-east-1:111122223333:key/*"}"#,
            )],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "identity resource in another region",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:eu-west-1:111122223333:key/*"}"#,
            )],
            false,
            enc.clone(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "identity NotResource",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","NotResource":"arn:aws:kms:eu-west-1:*"}"#,
            )],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "CreateKey on resource *",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:CreateKey","Resource":"*"}"#,
            )],
            false,
            create.clone(),
            Allow,
        ),
        (
            "NotPrincipal spares alice named with her account (IAM's example)",
            s(
                r#"{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:user/alice","arn:aws:iam::111122223333:root"]},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Allow,
        ),
        (
            // AWS evaluates the account too: the Deny applies to it, so to alice.
            "NotPrincipal naming alice without her account spares no one",
            s(
                r#"{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            // The account named spares alice only; mallory, of the same account, is denied.
            "NotPrincipal naming a user and the account denies the account's other users",
            s(
                r#"{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:user/bob","arn:aws:iam::111122223333:root"]},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "NotPrincipal spares a role session named with its role and account",
            s(
                r#"{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:sts::111122223333:assumed-role/audit/app","arn:aws:iam::111122223333:role/audit","arn:aws:iam::111122223333:root"]},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            session("app"),
            Allow,
        ),
        (
            // Not all sessions: another session of the role is denied.
            "NotPrincipal naming one session of a role denies the role's other sessions",
            s(
                r#"{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:sts::111122223333:assumed-role/audit/app","arn:aws:iam::111122223333:role/audit","arn:aws:iam::111122223333:root"]},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            session("other"),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "NotPrincipal denies others",
            s(
                r#"{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/carol"},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            vec![],
            false,
            enc.clone(),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "condition on context allows",
            s(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:Encrypt","Resource":"*","Condition":{{"StringEquals":{{"kms:EncryptionContext:app":"web"}}}}}}"#
            )),
            vec![],
            false,
            base().with("kms:EncryptionContext:app", &["web"]),
            Allow,
        ),
        (
            "condition on context refuses",
            s(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:Encrypt","Resource":"*","Condition":{{"StringEquals":{{"kms:EncryptionContext:app":"web"}}}}}}"#
            )),
            vec![],
            false,
            base().with("kms:EncryptionContext:app", &["db"]),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "condition without context refuses",
            s(&format!(
                r#"{{"Effect":"Allow","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:Encrypt","Resource":"*","Condition":{{"StringEquals":{{"kms:EncryptionContext:app":"web"}}}}}}"#
            )),
            vec![],
            false,
            base(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "deny unless secure transport",
            format!(
                r#"{ALICE_ALLOW_ENCRYPT},{{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}"#
            ),
            vec![],
            false,
            base().with("aws:SecureTransport", &["false"]),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "deny unless secure transport passes on TLS",
            format!(
                r#"{ALICE_ALLOW_ENCRYPT},{{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}"#
            ),
            vec![],
            false,
            base().with("aws:SecureTransport", &["true"]),
            Allow,
        ),
        (
            "role session matches role ARN",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            role.clone(),
            Allow,
        ),
        (
            "role session matches session ARN",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:sts::111122223333:assumed-role/app/session1"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            role.clone(),
            Allow,
        ),
        (
            "other role does not match",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/ops"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            role.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "cross-account: key policy only",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            bob_other_account(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "cross-account: both allow",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            bob_other_account(),
            Allow,
        ),
        (
            "cross-account: identity only",
            s(ROOT_ALLOW),
            vec![s(ID_ALLOW_ALL)],
            false,
            bob_other_account(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "cross-account: key policy names bob, no identity",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:user/bob"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![],
            false,
            bob_other_account(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "cross-account: key policy names bob, identity allows",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:user/bob"},"Action":"kms:Encrypt","Resource":"*"}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            bob_other_account(),
            Allow,
        ),
        (
            "cross-account: caller account condition",
            s(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            bob_other_account().with("kms:CallerAccount", &["444455556666"]),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "cross-account: principal star needs identity",
            s(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}"#),
            vec![],
            false,
            bob_other_account(),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "other account's root does not delegate for us",
            s(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:*","Resource":"*"}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Deny(NoKeyPolicyAllows),
        ),
        (
            "several identity policies: one allows",
            s(ROOT_ALLOW),
            vec![s(ID_ALLOW_DECRYPT), s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "several identity policies: one denies",
            s(ROOT_ALLOW),
            vec![s(ID_ALLOW_ALL), s(ID_DENY_ALL)],
            false,
            enc.clone(),
            Deny(ExplicitInIdentityPolicy),
        ),
        (
            "identity deny for other action only",
            s(ROOT_ALLOW),
            vec![
                s(ID_ALLOW_ALL),
                s(r#"{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}"#),
            ],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "identity deny with condition not met",
            s(ROOT_ALLOW),
            vec![
                s(ID_ALLOW_ALL),
                s(
                    r#"{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"red"}}}"#,
                ),
            ],
            false,
            base().with("aws:PrincipalTag/team", &["blue"]),
            Allow,
        ),
        (
            "identity deny with condition met",
            s(ROOT_ALLOW),
            vec![
                s(ID_ALLOW_ALL),
                s(
                    r#"{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"red"}}}"#,
                ),
            ],
            false,
            base().with("aws:PrincipalTag/team", &["red"]),
            Deny(ExplicitInIdentityPolicy),
        ),
        (
            "identity allow with resource tag",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/env":"dev"}}}"#,
            )],
            false,
            base().with("aws:ResourceTag/env", &["prod"]),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "identity allow with IP",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}"#,
            )],
            false,
            base().with("aws:SourceIp", &["127.0.0.1"]),
            Allow,
        ),
        (
            "identity allow with IP outside",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#,
            )],
            false,
            base().with("aws:SourceIp", &["127.0.0.1"]),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "identity allow expires",
            s(ROOT_ALLOW),
            vec![s(
                r#"{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}}"#,
            )],
            false,
            base().with("aws:CurrentTime", &["2026-11-23T00:00:00Z"]),
            Deny(NoIdentityPolicyAllows),
        ),
        (
            "two statements: deny one key allow all",
            format!(
                r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:Decrypt","Resource":"*"}}"#
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            dec.clone(),
            Deny(ExplicitInKeyPolicy),
        ),
        (
            "two statements: deny decrypt does not stop encrypt",
            format!(
                r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":{{"AWS":"{ALICE}"}},"Action":"kms:Decrypt","Resource":"*"}}"#
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Allow,
        ),
        (
            "service principal never matches a user",
            s(
                r#"{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"kms:*","Resource":"*"}"#,
            ),
            vec![s(ID_ALLOW_ALL)],
            false,
            enc.clone(),
            Deny(NoKeyPolicyAllows),
        ),
    ]
}

#[test]
fn decisions() {
    let cases = decision_cases();
    assert!(cases.len() >= 55, "{}", cases.len());
    for (name, kp, ids, grant, req, expect) in cases {
        let kp = key_policy(&kp);
        let ids: Vec<PolicyDocument> = ids.iter().map(|s| id_policy(s)).collect();
        assert_eq!(
            decide(&kp, "111122223333", &ids, grant.into(), &req),
            expect,
            "{name}"
        );
    }
}

/// Documents that are not valid, and the words that say why.
fn malformed_cases() -> Vec<(&'static str, PolicyKind, &'static str)> {
    use PolicyKind::*;
    vec![
        ("not json", Key, "not valid JSON"),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericLessThan":{"kms:ValidTo":"NaN"}}}]}"#,
            Key,
            "not a number",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"inf"}}}]}"#,
            Key,
            "not a date",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#,
            Identity,
            "Resource",
        ),
        ("[]", Key, "JSON object"),
        (r#"{"Version":"2012-10-17"}"#, Key, "Statement"),
        (
            r#"{"Version":"2012-10-17","Statement":[]}"#,
            Key,
            "Statement",
        ),
        (r#"{"Version":"2019-01-01","Statement":[]}"#, Key, "version"),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}],"Extra":1}"#,
            Key,
            "unknown element",
        ),
        (
            r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "Effect",
        ),
        (
            r#"{"Statement":[{"Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "Effect is required",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "Principal",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            Identity,
            "Action",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Action":"kms:*"}]}"#,
            Identity,
            "Resource",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Decrypt","Resource":"*"}]}"#,
            Key,
            "exactly one of Action",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"encrypt","Resource":"*"}]}"#,
            Key,
            "not a valid action",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "invalid principals",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::12345:root"},"Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "invalid principals",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Nobody":"x"},"Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "invalid principals",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"nobody","Action":"kms:*","Resource":"*"}]}"#,
            Key,
            "invalid principals",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            Identity,
            "cannot name a Principal",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringFoo":{"a":"b"}}}]}"#,
            Key,
            "not a valid condition operator",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NullIfExists":{"a":"true"}}}]}"#,
            Key,
            "not a valid condition operator",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericEquals":{"a":"x"}}}]}"#,
            Key,
            "not a number",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"DateEquals":{"a":"yesterday"}}}]}"#,
            Key,
            "not a date",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"a":"maybe"}}}]}"#,
            Key,
            "not true or false",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"a":"10.0.0.0/33"}}}]}"#,
            Key,
            "not an IP address",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"a":[]}}}]}"#,
            Key,
            "at least one value",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{}}}]}"#,
            Key,
            "names no key",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"a":{"b":"c"}}}}]}"#,
            Key,
            "strings, numbers or booleans",
        ),
    ]
}

#[test]
fn malformed_documents_say_what_is_wrong() {
    for (text, kind, words) in malformed_cases() {
        let e = parse(text, kind).expect_err(text);
        assert!(e.contains(words), "{text}: {e}");
    }
}

/// A key repeated in one JSON object (serde_json would keep the last and drop the others
/// silently, so a reviewer would read a condition, principal or effect that is not applied)
/// is refused in a policy being written; one stored before is read as it was.
#[test]
fn a_policy_being_written_may_not_repeat_a_key() {
    let repeated = [
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"},"StringEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}}]}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
        r#"{"Version":"2012-10-17","Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
    ];
    for text in repeated {
        let e = parse_new(text, PolicyKind::Key).expect_err(text);
        assert!(e.contains("appears twice in one object"), "{text}: {e}");
        parse(text, PolicyKind::Key).expect(text);
    }
    parse_new(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Sid":"b","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
        PolicyKind::Key,
    )
    .unwrap();
}

/// A role's trust policy needs no `Resource` (IAM's have none): a statement without one
/// applies to the role. A key policy's statement without one is taken, as AWS takes it, and
/// has no effect; an identity policy's is refused.
#[test]
fn a_trust_policy_needs_no_resource() {
    let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"sts:AssumeRole"}]}"#;
    let doc = parse_new(text, PolicyKind::Trust).unwrap();
    let req = Request {
        action: "sts:AssumeRole".into(),
        resource: "arn:aws:iam::111122223333:role/app".into(),
        ..base()
    };
    assert_eq!(evaluate(&doc, &req), Outcome::Allow(PrincipalMatch::Direct));
    let inert = parse_new(text, PolicyKind::Key).unwrap();
    assert_ne!(
        evaluate(&inert, &req),
        Outcome::Allow(PrincipalMatch::Direct)
    );
    let no_action = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Resource":"*"}]}"#;
    let inert = parse_new(no_action, PolicyKind::Key).unwrap();
    assert_ne!(
        evaluate(&inert, &req),
        Outcome::Allow(PrincipalMatch::Direct)
    );
    let identity = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*"}]}"#;
    assert!(parse(identity, PolicyKind::Identity).is_err());
}

/// A principal that is not one: AWS's text alone (recorded), not prefixed with the statement's
/// place as our own texts are.
#[test]
fn a_principal_with_a_wildcard_is_refused() {
    for p in [
        "arn:aws:iam::111122223333:user/contractor-*",
        "arn:aws:iam::111122223333:role/r?",
        "arn:aws:sts::111122223333:assumed-role/r/*",
    ] {
        let text = format!(
            r#"{{"Statement":[{{"Effect":"Deny","Principal":{{"AWS":"{p}"}},"Action":"kms:*","Resource":"*"}}]}}"#
        );
        let e = parse_new(&text, PolicyKind::Key).expect_err(p);
        assert!(e.contains("invalid principals"), "{p}: {e}");
        // One stored before the rule is read as it was: refusing it would lock its key.
        parse(&text, PolicyKind::Key).unwrap();
    }
}

#[test]
fn an_invalid_principal_is_refused_in_aws_words() {
    let e = parse(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"kms:*","Resource":"*"}]}"#,
        PolicyKind::Key,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "Policy contains a statement with one or more invalid principals."
    );
}

#[test]
fn valid_documents_parse() {
    let default = crate::domain::default_key_policy("111122223333");
    let d = parse(&default, PolicyKind::Key).unwrap();
    assert_eq!(d.statements.len(), 1);
    // A single statement object instead of a list, and a principal list.
    parse(
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["111122223333","arn:aws:iam::444455556666:role/r"]},"Action":"*","Resource":"*"}}"#,
        PolicyKind::Key,
    )
    .unwrap();
}

#[test]
fn glob_rules() {
    for (p, t, ci, want) in [
        ("*", "", false, true),
        ("a*", "abc", false, true),
        ("a?c", "abc", false, true),
        ("a?c", "ac", false, false),
        ("*c", "abc", false, true),
        ("*b*", "abc", false, true),
        ("A*", "abc", false, false),
        ("A*", "abc", true, true),
        ("kms:*Key*", "kms:DescribeKey", false, true),
        ("kms:*Key*", "kms:Encrypt", false, false),
        ("**", "x", false, true),
        ("a*b*c*d", "aXbXcXd", false, true),
        ("a*b*c*d", "aXbXdXc", false, false),
    ] {
        assert_eq!(glob(p, t, ci), want, "{p} {t}");
    }
}

/// The matcher this service used before (backtracking to the last `*`): right, but quadratic.
fn glob_by_backtracking(p: &[Tok], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == Tok::One || p[pi] == Tok::Char(t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == Tok::Any {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == Tok::Any {
        pi += 1;
    }
    pi == p.len()
}

#[test]
fn glob_agrees_with_backtracking_on_every_small_case() {
    // Every pattern of up to 5 tokens over {a, b, ?, *} against every text of up to 6
    // characters over {a, b}, and long pieces (past one word of shift-and bits).
    let alphabet = [Tok::Char('a'), Tok::Char('b'), Tok::One, Tok::Any];
    let mut patterns: Vec<Vec<Tok>> = vec![vec![]];
    for _ in 0..5 {
        let longer: Vec<Vec<Tok>> = patterns
            .iter()
            .filter(|p| p.len() == patterns.last().map_or(0, |l| l.len()))
            .flat_map(|p| alphabet.iter().map(move |t| [p.clone(), vec![*t]].concat()))
            .collect();
        patterns.extend(longer);
    }
    let mut texts: Vec<Vec<char>> = vec![vec![]];
    for _ in 0..6 {
        let longer: Vec<Vec<char>> = texts
            .iter()
            .filter(|t| t.len() == texts.last().map_or(0, |l| l.len()))
            .flat_map(|t| ['a', 'b'].map(|c| [t.clone(), vec![c]].concat()))
            .collect();
        texts.extend(longer);
    }
    for p in &patterns {
        for t in &texts {
            assert_eq!(glob_tokens(p, t), glob_by_backtracking(p, t), "{p:?} {t:?}");
        }
    }
    let long_piece: Vec<Tok> = std::iter::once(Tok::Any)
        .chain((0..150).map(|i| if i % 7 == 3 { Tok::One } else { Tok::Char('a') }))
        .chain([Tok::Char('b'), Tok::Any])
        .collect();
    for n in [140, 150, 151, 152, 300] {
        for tail in ["b", "ab", "c", ""] {
            let t: Vec<char> = "a".repeat(n).chars().chain(tail.chars()).collect();
            assert_eq!(
                glob_tokens(&long_piece, &t),
                glob_by_backtracking(&long_piece, &t),
                "{n} {tail}"
            );
        }
    }
}

/// A tenant's policy pattern that backtracks against its own request's values (`*aaaa…b`
/// against `aaaa…`) cost about (text × pattern) steps on the request's thread, seconds for one
/// call; now the text is read once per piece of the pattern.
#[test]
fn a_backtracking_pattern_is_matched_in_linear_time() {
    let pattern = format!("*{}b", "a".repeat(30_000));
    let text = "a".repeat(250_000);
    assert!(!glob(&pattern, &text, false));
    assert!(glob(&pattern, &format!("{text}b"), false));
    let pattern = format!("*{}?b", "a".repeat(30_000));
    assert!(!glob(&pattern, &text, true));
    assert!(glob(&pattern, &format!("{text}xb"), true));
}

#[test]
fn denial_messages_name_the_missing_policy() {
    let r = base();
    assert_eq!(
        denial_message(&r, Denial::NoIdentityPolicyAllows),
        format!("User: {ALICE} is not authorized to perform: kms:Encrypt on resource: {KEY} because no identity-based policy allows the kms:Encrypt action")
    );
    assert!(denial_message(&r, Denial::ExplicitInKeyPolicy)
        .ends_with("with an explicit deny in a resource-based policy"));
    assert!(denial_message(&r, Denial::NoKeyPolicyAllows)
        .ends_with("because no resource-based policy allows the kms:Encrypt action"));
    assert!(denial_message(&r, Denial::ExplicitInIdentityPolicy)
        .ends_with("with an explicit deny in an identity-based policy"));
    // A caller of another account its own policies do not allow (recorded): "this resource".
    let mut other = base();
    other.principal_account = "222222222222".into();
    other.principal_arn = "arn:aws:iam::222222222222:user/bob".into();
    assert_eq!(
        denial_message(&other, Denial::NoIdentityPolicyAllows),
        "User: arn:aws:iam::222222222222:user/bob is not authorized to perform: kms:Encrypt on this resource because no identity-based policy allows the kms:Encrypt action"
    );
    // Refused by the key's side (absent, not allowed, denied): one text, naming nothing
    // (recorded, 2025).
    for why in [Denial::NoKeyPolicyAllows, Denial::ExplicitInKeyPolicy] {
        assert_eq!(
            denial_message(&other, why),
            "User: arn:aws:iam::222222222222:user/bob is not authorized to perform: kms:Encrypt on this resource because the resource does not exist in this Region, no resource-based policies allow access, or a resource-based policy explicitly denies access"
        );
    }
    // The caller's own explicit deny: the key's ARN is not told back either.
    assert!(!denial_message(&other, Denial::ExplicitInIdentityPolicy).contains(KEY));
}

/// A grant whose grantee is the caller's account is the account root of a key policy: its
/// principals use it only where their identity policies allow the action.
#[test]
fn a_grant_to_the_account_needs_an_identity_policy() {
    use Decision::*;
    use Denial::*;
    let no_key_policy = key_policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"kms:*","Resource":"*"}"#,
    );
    let allow = vec![id_policy(ID_ALLOW_ALL)];
    let deny = vec![id_policy(
        r#"{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*"}"#,
    )];
    let cases: Vec<(&str, GrantAllows, &[PolicyDocument], Decision)> = vec![
        (
            "to the caller, no identity policy",
            GrantAllows::Caller,
            &[],
            Allow,
        ),
        (
            "to the account, no identity policy",
            GrantAllows::Account,
            &[],
            Deny(NoKeyPolicyAllows),
        ),
        (
            "to the account, identity allows",
            GrantAllows::Account,
            &allow,
            Allow,
        ),
        (
            "to the account, identity denies",
            GrantAllows::Account,
            &deny,
            Deny(ExplicitInIdentityPolicy),
        ),
        (
            "to the caller, identity denies",
            GrantAllows::Caller,
            &deny,
            Deny(ExplicitInIdentityPolicy),
        ),
        (
            "no grant, identity allows",
            GrantAllows::No,
            &allow,
            Deny(NoKeyPolicyAllows),
        ),
    ];
    for (name, grant, ids, expect) in cases {
        assert_eq!(
            decide(&no_key_policy, "111122223333", ids, grant, &base()),
            expect,
            "{name}"
        );
    }
}

/// A policy read back after a principal it named was deleted names that principal's unique id
/// (`AIDA…`, `AROA…`): it must be accepted again as it is (clients round-trip policies).
#[test]
fn unique_ids_of_deleted_principals_are_valid_principals() {
    for id in ["AIDAXEQWEDTUCYX7GGMTR", "AROA3XFRBF535PLBIFPI4"] {
        let text = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{id}"}},"Action":"kms:*","Resource":"*"}}]}}"#
        );
        parse(&text, PolicyKind::Key).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    for bad in ["AIDA", "aidaxeqwedtucyx7ggmtr", "AKIAXEQWEDTUCYX7GGMTR"] {
        let text = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{bad}"}},"Action":"kms:*","Resource":"*"}}]}}"#
        );
        assert!(parse(&text, PolicyKind::Key).is_err(), "{bad}");
    }
}
