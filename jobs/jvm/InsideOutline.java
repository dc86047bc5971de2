package jobs.jvm;

import org.apache.spark.broadcast.Broadcast;
import org.apache.spark.sql.api.java.UDF2;

/**
 * The residency test as a Spark SQL function of (lat, lon): true inside the broadcast outline,
 * false outside and for a missing coordinate (see jobs/stages/residency/expression.py).
 */
public final class InsideOutline implements UDF2<Double, Double, Boolean> {
  private static final long serialVersionUID = 1L;
  private final Broadcast<Outline> outline;

  public InsideOutline(Broadcast<Outline> outline) {
    this.outline = outline;
  }

  @Override
  public Boolean call(Double lat, Double lon) {
    return lat != null && lon != null && outline.value().contains(lat, lon);
  }
}
