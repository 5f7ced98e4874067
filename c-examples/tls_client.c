/* A plain OpenSSL TLS client that authenticates with a client certificate.
 * Nothing in it knows about the IoT SAFE provider: its key file may be a key reference
 * (`iotsafe keyref`), and OPENSSL_CONF decides which providers load it.
 *
 *   tls_client HOST PORT CERT KEY CA [tls1.2|tls1.3]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int fail(const char *what)
{
    fprintf(stderr, "tls_client: %s\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT CERT KEY CA [tls1.2|tls1.3]\n", argv[0]);
        return 2;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return fail("SSL_CTX_new");
    if (argc > 6) {
        int version = strcmp(argv[6], "tls1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
        SSL_CTX_set_min_proto_version(ctx, version);
        SSL_CTX_set_max_proto_version(ctx, version);
    }
    if (SSL_CTX_use_certificate_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1)
        return fail("cannot load the certificate");
    if (SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1)
        return fail("cannot load the private key");
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail("the private key does not match the certificate");
    if (SSL_CTX_load_verify_locations(ctx, argv[5], NULL) != 1)
        return fail("cannot load the CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1
        || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("tls_client: connect");
        return 1;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1)
        return fail("handshake failed");
    char buf[256];
    int n = SSL_read(ssl, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    printf("connected %s: %s", SSL_get_version(ssl), buf);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return 0;
}
