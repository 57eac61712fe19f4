/* The stb_image_write implementation unit of cvxcnn (PNG output; the tests also write
 * JPEG, BMP fixtures with it). Apart from stb_impl.c so that the sanitized build can
 * exempt this file alone from one check: its JPEG encoder shifts a signed int past its
 * sign bit (stbiw__jpg_writeBits), which UBSan reports; see CMakeLists.txt. */
#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
