#include "raproxy/err.h"

#include <stddef.h>

struct err_row {
    const char *name;
    const char *msg;
    int http;
    enum rp_failinfo fi;
};

static const struct err_row rows[RP_E_COUNT_] = {
#define ROW_(name, msg, http, fi) {#name, msg, http, fi},
    RP_ERRORS(ROW_)
#undef ROW_
};

static const struct err_row *row(int err)
{
    if (err >= 0 || -err > RP_E_COUNT_)
        return NULL;
    return &rows[-err - 1];
}

const char *rp_err_name(int err)
{
    const struct err_row *r = row(err);
    if (err == RP_OK)
        return "OK";
    return r ? r->name : "UNKNOWN";
}

const char *rp_err_msg(int err)
{
    const struct err_row *r = row(err);
    if (err == RP_OK)
        return "success";
    return r ? r->msg : "unknown error";
}

int rp_err_http(int err)
{
    const struct err_row *r = row(err);
    if (err == RP_OK)
        return 200;
    return r ? r->http : 500;
}

enum rp_failinfo rp_err_failinfo(int err)
{
    const struct err_row *r = row(err);
    return r ? r->fi : RP_FI_NONE;
}

const char *rp_failinfo_name(enum rp_failinfo fi)
{
    static const char *const names[] = {
        "badAlg",
        "badMessageCheck",
        "badRequest",
        "badTime",
        "badCertId",
        "badDataFormat",
        "wrongAuthority",
        "incorrectData",
        "missingTimeStamp",
        "badPOP",
        "certRevoked",
        "certConfirmed",
        "wrongIntegrity",
        "badRecipientNonce",
        "timeNotAvailable",
        "unacceptedPolicy",
        "unacceptedExtension",
        "addInfoNotAvailable",
        "badSenderNonce",
        "badCertTemplate",
        "signerNotTrusted",
        "transactionIdInUse",
        "unsupportedVersion",
        "notAuthorized",
        "systemUnavail",
        "systemFailure",
        "duplicateCertReq",
    };
    if (fi < 0 || (size_t)fi >= sizeof names / sizeof names[0])
        return NULL;
    return names[fi];
}
