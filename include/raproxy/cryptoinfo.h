/* What the linked wolfSSL was built with, for `raproxy --version` and the startup log. */
#ifndef RAPROXY_CRYPTOINFO_H
#define RAPROXY_CRYPTOINFO_H

/* "wolfSSL 5.5.4 (fast build: SP math on, x86-64 asm on, AES-NI on)". Static string. */
const char *rp_cryptoinfo(void);

#endif
