/* status.h - the one status vocabulary for internal functions: 0 or a negative px_status. */
#ifndef S3TEE_STATUS_H
#define S3TEE_STATUS_H

enum px_status {
    PX_OK = 0,
    PX_EAGAIN = -1,   /* need more input; call again with more bytes */
    PX_ENOMEM = -2,   /* allocation refused (only where sizes are client-controlled) */
    PX_EINVAL = -3,   /* malformed input */
    PX_ETOOBIG = -4,  /* input exceeds a configured limit */
    PX_EBADSIG = -5,  /* a signature or checksum did not verify */
    PX_ENOTFOUND = -6,/* lookup missed */
    PX_EIO = -7,      /* I/O failure (file, socket) */
    PX_EEXPIRED = -8, /* time window exceeded */
};

#endif
