/*
 * A stand-in for a program linked against another OpenSSL: built twice by
 * tests/preload_client.rs, as a library `libotherssl.so` whose SSL_connect carries the symbol
 * version OPENSSL_1_1_0 (-DOTHER_LIBRARY), and as a program calling that SSL_connect. Through
 * `iotsafe-run`, the call must reach this library, not the shim (whose SSL_connect is
 * OPENSSL_3.0.0 and would take the argument for an OpenSSL 3 SSL).
 */
#include <stdio.h>

#ifdef OTHER_LIBRARY
int SSL_connect(void *ssl)
{
	printf("the other OpenSSL's SSL_connect(%s)\n", (const char *)ssl);
	return 1;
}
#else
int SSL_connect(void *ssl);

int main(void)
{
	static char not_an_openssl3_ssl[] = "its own SSL";
	return SSL_connect(not_an_openssl3_ssl) == 1 ? 0 : 1;
}
#endif
