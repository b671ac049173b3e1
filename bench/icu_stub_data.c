/* ICU's common data with no items: an entry point whose table of contents is empty. Linked in
 * place of libicudata.a (the data itself), it leaves ICU to find its data in a file,
 * $ICU_DATA/icudt<major>l.dat, which ICU reads whole into its heap on first use (WASI has no
 * mmap: ICU is built with U_HAVE_MMAP=0). That is the "data loaded from a file" option of
 * issue 32, measured by bench/icu_data.py against the data linked in.
 *
 * The layout is ICU's data header (udata.h: headerSize, two magic bytes, UDataInfo) followed
 * by a "ToCP" table of contents: a count (0) and one unused entry. Build with
 * -DKILN_ICU_ENTRY=icudt<major>_dat, the symbol ICU's common code looks for. */
#include <stdint.h>

#ifndef KILN_ICU_ENTRY
#error "define KILN_ICU_ENTRY as ICU's data entry point, icudt<major>_dat"
#endif

struct common_data {
    uint16_t header_size;
    uint8_t magic1, magic2;
    /* UDataInfo */
    uint16_t info_size, info_reserved;
    uint8_t big_endian, charset_family, sizeof_uchar, info_reserved_byte;
    uint8_t data_format[4], format_version[4], data_version[4];
    char padding[8];
    /* the table of contents */
    uint32_t count, reserved;
    uint32_t first_entry[2];
};

_Alignas(16) const struct common_data KILN_ICU_ENTRY = {
    .header_size = 32,
    .magic1 = 0xda,
    .magic2 = 0x27,
    .info_size = 20,
    .big_endian = 0,      /* wasm32 is little-endian */
    .charset_family = 0,  /* ASCII */
    .sizeof_uchar = 2,
    .data_format = {'T', 'o', 'C', 'P'},
    .format_version = {1, 0, 0, 0},
    .padding = {'n', 'o', ' ', 'd', 'a', 't', 'a', 0},
    .count = 0,
};
