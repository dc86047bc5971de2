package jobs.jvm;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * The residency outline as the ingest job tests points against it (see
 * jobs/stages/residency/expression.py): even-odd ray casting with the arithmetic of the Python
 * Boundary.contains, over the edges that span the point's latitude band only.
 *
 * <p>Built once on the driver from the rings' text and broadcast: a task carries a reference to
 * it, not its edges.
 */
public final class Outline implements Serializable {
  private static final long serialVersionUID = 1L;
  /** The edges per latitude band, on average; more bands cost memory, fewer cost time. */
  private static final int EDGES_PER_BAND = 8;

  private final double minLat;
  private final double maxLat;
  private final double minLon;
  private final double maxLon;
  private final double step;
  /** Per band, its edges as (x, y, yj, dx, dy) in a row. */
  private final double[][] bands;

  /**
   * The rings as text: rings separated by ';', each a ','-separated list of lon and lat
   * alternately (GeoJSON order), every number as Python's repr writes it (read back exactly).
   */
  public Outline(String text) {
    this(parse(text));
  }

  private Outline(List<double[]> rings) {
    double loLat = Double.POSITIVE_INFINITY, hiLat = Double.NEGATIVE_INFINITY;
    double loLon = Double.POSITIVE_INFINITY, hiLon = Double.NEGATIVE_INFINITY;
    List<double[]> edges = new ArrayList<>();
    for (double[] ring : rings) {
      int n = ring.length / 2;
      for (int i = 0; i < n; i++) {
        double x = ring[2 * i], y = ring[2 * i + 1];
        loLon = Math.min(loLon, x);
        hiLon = Math.max(hiLon, x);
        loLat = Math.min(loLat, y);
        hiLat = Math.max(hiLat, y);
        int j = (i + n - 1) % n;  // the edge from the vertex before, as the Python loop pairs them
        double xj = ring[2 * j], yj = ring[2 * j + 1];
        if (y != yj) {  // a horizontal edge never crosses the ray
          edges.add(new double[] {x, y, yj, xj - x, yj - y});
        }
      }
    }
    minLat = loLat;
    maxLat = hiLat;
    minLon = loLon;
    maxLon = hiLon;
    int count = Math.max(1, edges.size() / EDGES_PER_BAND);
    step = (maxLat - minLat) / count;
    List<List<double[]>> banded = new ArrayList<>();
    for (int b = 0; b < count; b++) {
      banded.add(new ArrayList<>());
    }
    for (double[] e : edges) {
      int first = (int) Math.floor((Math.min(e[1], e[2]) - minLat) / step);
      int last = (int) Math.floor((Math.max(e[1], e[2]) - minLat) / step);
      for (int b = Math.max(0, first); b <= Math.min(count - 1, last); b++) {
        banded.get(b).add(e);
      }
    }
    bands = new double[count][];
    for (int b = 0; b < count; b++) {
      List<double[]> in = banded.get(b);
      bands[b] = new double[in.size() * 5];
      for (int k = 0; k < in.size(); k++) {
        System.arraycopy(in.get(k), 0, bands[b], 5 * k, 5);
      }
    }
  }

  private static List<double[]> parse(String text) {
    List<double[]> rings = new ArrayList<>();
    for (String ring : text.split(";")) {
      String[] numbers = ring.split(",");
      if (numbers.length < 6 || numbers.length % 2 != 0) {
        throw new IllegalArgumentException("a ring needs three or more (lon, lat) pairs");
      }
      double[] values = new double[numbers.length];
      for (int i = 0; i < numbers.length; i++) {
        values[i] = Double.parseDouble(numbers[i]);
      }
      rings.add(values);
    }
    return rings;
  }

  /** Whether the point is inside (false for NaN; points on an edge may fall either way). */
  public boolean contains(double lat, double lon) {
    if (!(lat >= minLat && lat <= maxLat && lon >= minLon && lon <= maxLon)) {
      return false;
    }
    double[] edges = bands[Math.min((int) Math.floor((lat - minLat) / step), bands.length - 1)];
    boolean inside = false;
    for (int k = 0; k < edges.length; k += 5) {
      double x = edges[k], y = edges[k + 1], yj = edges[k + 2];
      if ((y > lat) != (yj > lat) && lon < edges[k + 3] * (lat - y) / edges[k + 4] + x) {
        inside = !inside;
      }
    }
    return inside;
  }
}
