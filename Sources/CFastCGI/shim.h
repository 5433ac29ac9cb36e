#ifndef MAILGATE_CFASTCGI_SHIM_H
#define MAILGATE_CFASTCGI_SHIM_H
// fcgiapp.h only: fcgi_stdio.h redefines stdio and must never be used.
#include <fcgiapp.h>
#endif
