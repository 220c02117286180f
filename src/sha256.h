/* sha256.h: the SHA-256 digest that identifies a loaded model (its files'
 * bytes), kept in-tree so the core needs no crypto library for one hash. */
#ifndef SIGFLOW_SHA256_H
#define SIGFLOW_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sf_sha256 {
    uint32_t h[8];
    uint64_t total;            /* bytes hashed so far */
    unsigned char block[64];
    size_t used;               /* bytes waiting in block */
} sf_sha256;

void sf_sha256_init(sf_sha256 *c);
void sf_sha256_update(sf_sha256 *c, const void *data, size_t n);
/* Writes the digest as 64 lowercase hex digits plus a NUL. */
void sf_sha256_final_hex(sf_sha256 *c, char hex[65]);

#endif
