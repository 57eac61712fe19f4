/* The one stb implementation unit of cvxcnn.
 *
 * Only formats with a magic number are compiled in (PNG, JPEG, BMP, PNM): TGA has none,
 * so arbitrary bytes could be mis-read as TGA, and the GIF decoder carries open
 * advisories (CVE-2023-45661, CVE-2023-45664). STBI_MAX_DIMENSIONS is a hard ceiling;
 * the configurable, lower cap is checked by cvxcnn before decoding (image_codec.cpp).
 * Files are read by cvxcnn itself with a size cap, so stb's stdio paths are left out.
 * The writer is compiled apart, in stb_write_impl.c. */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_PNM
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
