/* A plain OpenSSL TLS server that requires a client certificate.
 * Nothing in it knows about the IoT SAFE provider: its key file may be a key reference,
 * and OPENSSL_CONF decides which providers load it.
 *
 *   tls_server PORT CERT KEY CA [CONNECTIONS]
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
    fprintf(stderr, "tls_server: %s\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT CERT KEY CA [CONNECTIONS]\n", argv[0]);
        return 2;
    }
    int connections = argc > 5 ? atoi(argv[5]) : 1;

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return fail("SSL_CTX_new");
    if (SSL_CTX_use_certificate_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1)
        return fail("cannot load the certificate");
    if (SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1)
        return fail("cannot load the private key");
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail("the private key does not match the certificate");
    if (SSL_CTX_load_verify_locations(ctx, argv[4], NULL) != 1)
        return fail("cannot load the CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(listener, 16) != 0) {
        perror("tls_server: bind/listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);

    int failures = 0;
    for (int i = 0; i < connections; i++) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            continue;
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            X509 *peer = SSL_get1_peer_certificate(ssl);
            char name[256] = "";
            if (peer != NULL)
                X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof(name));
            printf("accepted %s %s\n", SSL_get_version(ssl), name);
            fflush(stdout);
            const char hello[] = "hello from the server\n";
            SSL_write(ssl, hello, sizeof(hello) - 1);
            SSL_shutdown(ssl);
            X509_free(peer);
        } else {
            failures++;
            fail("handshake failed");
        }
        SSL_free(ssl);
        close(fd);
    }
    close(listener);
    SSL_CTX_free(ctx);
    return failures == 0 ? 0 : 1;
}
