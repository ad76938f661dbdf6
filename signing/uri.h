/* uri.h - S3's URI-encoding rules (SigV4 "UriEncode") and percent-decoding. */
#ifndef S3TEE_URI_H
#define S3TEE_URI_H

#include <stddef.h>

#include "common/pool.h"
#include "common/slice.h"

/*
 * uri_encode - S3 URI encoding: the unreserved bytes A-Za-z0-9 - _ . ~ are kept, every
 * other byte becomes %XX with uppercase hex; '/' is kept too when KEEP_SLASH (object paths).
 * OUT holds 3*in.len+1 bytes; the result is NUL-terminated. Returns its length.
 */
size_t uri_encode(struct slice in, int keep_slash, char *out);
/* The same into pool P; the result lives until pool_deinit(P). */
char *uri_encode_pool(struct pool *p, struct slice in, int keep_slash);
/*
 * uri_decode_pool - percent-decoding. PLUS_IS_SPACE turns '+' into ' ' (form-style query
 * strings only; SigV4 canonicalisation keeps '+' as a literal plus).
 * Returns 0 and a NUL-terminated pool copy in *OUT, or -1 on a bad escape ("%", "%G1", "%4")
 * or a NUL byte, raw or decoded (which no S3 name may contain and C strings cannot carry).
 */
int uri_decode_pool(struct pool *p, struct slice in, int plus_is_space, struct slice *out);

#endif
