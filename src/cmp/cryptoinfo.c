/* The facts come from the options.h this tree compiles against, which CMake makes the
 * one the linked library was built with (see RAPROXY_WOLFSSL in CMakeLists.txt). */
#include <wolfssl/options.h>
#include <wolfssl/version.h>

#include "raproxy/cryptoinfo.h"

#ifndef RP_WOLFSSL_BUILD
#define RP_WOLFSSL_BUILD "unknown"
#endif

#if defined(WOLFSSL_SP_MATH_ALL) && defined(WOLFSSL_HAVE_SP_ECC)
#define RP_CI_SP "SP math on"
#else
#define RP_CI_SP "SP math off"
#endif
#if defined(WOLFSSL_SP_X86_64_ASM)
#define RP_CI_ASM "x86-64 asm on"
#else
#define RP_CI_ASM "x86-64 asm off"
#endif
#if defined(USE_INTEL_SPEEDUP)
#define RP_CI_INTEL "Intel speedups on"
#else
#define RP_CI_INTEL "Intel speedups off"
#endif
#if defined(WOLFSSL_AESNI)
#define RP_CI_AESNI "AES-NI on"
#else
#define RP_CI_AESNI "AES-NI off"
#endif

const char *rp_cryptoinfo(void)
{
    return "wolfSSL " LIBWOLFSSL_VERSION_STRING " (" RP_WOLFSSL_BUILD " build: " RP_CI_SP
           ", " RP_CI_ASM ", " RP_CI_INTEL ", " RP_CI_AESNI ")";
}
